"""Fixtures: a running pochta instance per test module (`instance`), and a
factory for tests that need their own configuration (`make_instance`).

The build directory is $POCHTA_BUILD (default <repo>/build).  Set
POCHTA_KEEP=1 to keep instance directories after the run."""

import pytest

import pochtatest

from pochtatest import close_instance as _close
from pochtatest import new_instance as _new_instance


@pytest.fixture(scope="module")
def instance():
    """A started instance shared by the tests of one module: users alice and
    bob, local domains example.test and other.test, default settings."""
    inst = _new_instance()
    yield inst
    _close(inst)


@pytest.fixture
def make_instance():
    """Factory for a private instance: make_instance(extra_conf={...},
    aliases=[(src, target, ...)], start=True)."""
    made = []

    def make(**kw):
        inst = _new_instance(**kw)
        made.append(inst)
        return inst

    yield make
    errors = []
    for inst in made:
        try:
            _close(inst)
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for inst in pochtatest.live_instances():
            text = inst.all_stderr()
            if text:
                rep.sections.append(("pochtad stderr (%s)" % inst.dir, text[-8000:]))
