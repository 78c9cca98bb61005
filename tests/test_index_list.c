/* test_index_list.c — layer/head selections like "0,4,8-11". */
#include <criterion/criterion.h>
#include <string.h>

#include "index_list.h"

Test(index_list, numbers_and_ranges)
{
    unsigned char on[12];
    kv_err err = {0};
    cr_assert_eq(index_list_parse("0,4,8-11", 12, on, "layers", &err), 6, "%s", err.msg);
    const unsigned char want[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    cr_assert_arr_eq(on, want, 12);
    cr_assert_eq(index_list_parse("3,3,2-3", 12, on, "layers", &err), 2, "duplicates count once");
    cr_assert_eq(index_list_parse(NULL, 12, on, "layers", &err), 12, "NULL selects all");
}

Test(index_list, errors_name_the_option_and_the_range)
{
    unsigned char on[30];
    kv_err err = {0};
    cr_assert_eq(index_list_parse("0,31", 30, on, "layers", &err), KV_EUSAGE);
    cr_assert_str_eq(err.msg, "--layers: 31 is out of range 0..29");
    const char *bad[] = {"", "a", "1,", "3-1", "-2", "1-", "1;2", "1,,2", "+1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(index_list_parse(bad[i], 30, on, "heads", &err), KV_EUSAGE, "'%s'", bad[i]);
        cr_assert(strstr(err.msg, "--heads"), "%s", err.msg);
    }
}
