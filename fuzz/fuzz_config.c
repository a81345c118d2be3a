/* Config parser: any bytes give a config or a clean error, never a crash
 * or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config cfg;
    char err[512];
    memset(&cfg, 0, sizeof cfg);
    config_parse((const char *)data, size, "fuzz.conf", "/fuzz", &cfg, err, sizeof err);
    config_free(&cfg);
    return 0;
}
