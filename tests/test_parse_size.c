// ctest: labels=unit timeout=30
/* kvt_parse_size: the one byte-size parser of the program, the service and config files. */
#include <errno.h>

#include "kvtier/kvtier.h"
#include "testutil.h"

static uint64_t ok(const char *s)
{
    uint64_t v = 0;
    TU_CHECK_EQ(kvt_parse_size(s, &v), 0);
    return v;
}

int main(void)
{
    TU_CHECK_EQ(ok("0"), 0);
    TU_CHECK_EQ(ok("512"), 512);
    TU_CHECK_EQ(ok("512B"), 512);
    TU_CHECK_EQ(ok("64K"), 64ull << 10);
    TU_CHECK_EQ(ok("64k"), 64ull << 10);
    TU_CHECK_EQ(ok("4G"), 4ull << 30);
    TU_CHECK_EQ(ok("8GiB"), 8ull << 30);
    TU_CHECK_EQ(ok("3MB"), 3ull << 20);
    TU_CHECK_EQ(ok("1tb"), 1ull << 40);
    TU_CHECK_EQ(ok("18446744073709551615"), UINT64_MAX);
    uint64_t v = 7;
    const char *bad[] = {"", "-1", "+1", "G", "1X", "1 G", "1GG", "1.5G", "1Gx", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        TU_CHECK_EQ(kvt_parse_size(bad[i], &v), -EINVAL);
    TU_CHECK_EQ(kvt_parse_size(NULL, &v), -EINVAL);
    TU_CHECK_EQ(kvt_parse_size("16777216T", &v), -ERANGE); /* 2^24 TiB = 2^64 */
    TU_CHECK_EQ(kvt_parse_size("99999999999999999999", &v), -ERANGE);
    TU_CHECK_EQ(v, 7); /* untouched on error */
    return 0;
}
