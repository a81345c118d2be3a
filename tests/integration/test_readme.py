"""README is the operator's manual: its configuration reference must list
every key the daemon accepts, with the default and meaning compiled in."""
import importlib.machinery
import importlib.util

from pochtatest import REPO, build_dir


def _generator():
    loader = importlib.machinery.SourceFileLoader("config_reference", str(REPO / "tools" / "config-reference"))
    spec = importlib.util.spec_from_loader("config_reference", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_readme_configuration_reference_matches_the_key_table():
    table = _generator().reference(str(build_dir()))
    readme = (REPO / "README.md").read_text()
    begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
    assert begin in readme and end in readme, "README.md lacks the configuration reference markers"
    documented = readme.split(begin, 1)[1].split(end, 1)[0]
    assert documented == table, (
        "README.md's configuration reference is out of date; regenerate it with "
        "tools/config-reference build and paste it between the markers")
