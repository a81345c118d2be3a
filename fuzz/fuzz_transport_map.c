/* Transport map parser and next-hop syntax: any bytes give a map or a
 * clean error, never a crash or a leak; every parsed entry can be looked
 * up and formatted. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mta/mta_route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mta_transport_map map = { NULL, 0 };
    char err[300];
    mta_transport_parse((const char *)data, size, &map, err, sizeof err);
    for (size_t i = 0; i < map.n; i++) {
        char text[300];
        const struct mta_nexthop *nh = mta_transport_lookup(&map, map.v[i].domain);
        if (nh) mta_nexthop_format(nh, 25, text, sizeof text);
    }
    struct mta_nexthop nh;
    mta_nexthop_parse((const char *)data, size, &nh, err, sizeof err);
    mta_transport_free(&map);
    return 0;
}
