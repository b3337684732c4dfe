/*
 * test_units — et_parse_bandwidth / et_parse_size / et_parse_duration:
 * every unit, spacing, fractions and exponents, exact size arithmetic, and
 * every rejection (bare numbers, negatives, NaN/inf, unknown units with a
 * suggestion, garbage, overflow). Also et_closest_name.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../topology/config.h"

/* Parse a bandwidth that must succeed and return bytes/s. */
static double bw(const char *s)
{
    double v = -1;
    const char *why = NULL;
    ck_assert_msg(et_parse_bandwidth(s, &v, &why) == 0, "'%s' refused: %s", s, why ? why : "");
    return v;
}

static uint64_t sz(const char *s)
{
    uint64_t v = 0;
    const char *why = NULL;
    ck_assert_msg(et_parse_size(s, &v, &why) == 0, "'%s' refused: %s", s, why ? why : "");
    return v;
}

static double dur(const char *s)
{
    double v = -1;
    const char *why = NULL;
    ck_assert_msg(et_parse_duration(s, &v, &why) == 0, "'%s' refused: %s", s, why ? why : "");
    return v;
}

/* The reason a parse fails; asserts it fails and leaves *out alone. */
static const char *bw_why(const char *s)
{
    double v = 42.0;
    const char *why = NULL;
    ck_assert_msg(et_parse_bandwidth(s, &v, &why) == -1, "bandwidth '%s' accepted", s);
    ck_assert(why != NULL && v == 42.0);
    return why;
}

static const char *sz_why(const char *s)
{
    uint64_t v = 42;
    const char *why = NULL;
    ck_assert_msg(et_parse_size(s, &v, &why) == -1, "size '%s' accepted", s);
    ck_assert(why != NULL && v == 42);
    return why;
}

static const char *dur_why(const char *s)
{
    double v = 42.0;
    const char *why = NULL;
    ck_assert_msg(et_parse_duration(s, &v, &why) == -1, "duration '%s' accepted", s);
    ck_assert(why != NULL && v == 42.0);
    return why;
}

#define ck_assert_contains(hay, needle) \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' lacks '%s'", (hay), (needle))

START_TEST(test_bandwidth_bit_units_convert_to_bytes_per_second)
{
    ck_assert(bw("1Gbps") == 1.25e8);
    ck_assert(bw("1bps") == 0.125);
    ck_assert(bw("8kbps") == 1000.0);
    ck_assert(bw("8Kbps") == 1000.0);
    ck_assert(bw("200Mbps") == 2.5e7);
    ck_assert(bw("10Gbps") == 1.25e9);
    ck_assert(bw("2Tbps") == 2.5e11);
    ck_assert(bw("1.5Gbit/s") == 1.875e8);
    ck_assert(bw("8bit/s") == 1.0);
    ck_assert(bw("8kbit/s") == 1000.0);
    ck_assert(bw("8Kbit/s") == 1000.0);
    ck_assert(bw("8Mbit/s") == 1e6);
    ck_assert(bw("8Tbit/s") == 1e12);
    ck_assert(bw("8b/s") == 1.0);
    ck_assert(bw("8kb/s") == 1000.0);
    ck_assert(bw("8Kb/s") == 1000.0);
    ck_assert(bw("100Mb/s") == 1.25e7);
    ck_assert(bw("1Gb/s") == 1.25e8);
    ck_assert(bw("1Tb/s") == 1.25e11);
}
END_TEST

START_TEST(test_bandwidth_byte_units_si_and_binary)
{
    ck_assert(bw("125MB/s") == 1.25e8);
    ck_assert(bw("3B/s") == 3.0);
    ck_assert(bw("2kB/s") == 2000.0);
    ck_assert(bw("2KB/s") == 2000.0);
    ck_assert(bw("1GB/s") == 1e9);
    ck_assert(bw("1TB/s") == 1e12);
    ck_assert(bw("1KiB/s") == 1024.0);
    ck_assert(bw("1MiB/s") == 1048576.0);
    ck_assert(bw("2GiB/s") == 2147483648.0);
    ck_assert(bw("1TiB/s") == 1099511627776.0);
}
END_TEST

START_TEST(test_number_forms_spacing_fraction_exponent_zero)
{
    ck_assert(bw("10 Gbps") == 1.25e9);
    ck_assert(bw("10\tGbps") == 1.25e9);
    ck_assert(bw("  10Gbps  ") == 1.25e9);
    ck_assert(bw("0.5Gbps") == 6.25e7);
    ck_assert(bw(".5Gbps") == 6.25e7);
    ck_assert(bw("5.Gbps") == 6.25e8);
    ck_assert(bw("1e3Mbps") == 1.25e8);
    ck_assert(bw("1E+3Mbps") == 1.25e8);
    ck_assert(bw("1000e-3Gbps") == 1.25e8);
    ck_assert(bw("0Gbps") == 0.0);              /* parses; the loader demands > 0 */
    ck_assert(dur("0ms") == 0.0);
    ck_assert(sz("0") == 0);
}
END_TEST

START_TEST(test_size_units_are_exact_integers)
{
    ck_assert_uint_eq(sz("1024"), 1024);
    ck_assert_uint_eq(sz("7B"), 7);
    ck_assert_uint_eq(sz("1kB"), 1000);
    ck_assert_uint_eq(sz("1KB"), 1000);
    ck_assert_uint_eq(sz("8GB"), 8000000000ull);
    ck_assert_uint_eq(sz("3MB"), 3000000ull);
    ck_assert_uint_eq(sz("2TB"), 2000000000000ull);
    ck_assert_uint_eq(sz("1KiB"), 1024);
    ck_assert_uint_eq(sz("512MiB"), 536870912ull);
    ck_assert_uint_eq(sz("512 MiB"), 536870912ull);
    ck_assert_uint_eq(sz("16GiB"), 17179869184ull);
    ck_assert_uint_eq(sz("1TiB"), 1099511627776ull);
    ck_assert_uint_eq(sz("1.5GiB"), 1610612736ull);
    ck_assert_uint_eq(sz("0.3KB"), 300);           /* no binary-float error */
    ck_assert_uint_eq(sz("1.0"), 1);
    ck_assert_uint_eq(sz("2e3"), 2000);
    ck_assert_uint_eq(sz("0.001KiB"), 1);          /* 1.024 rounds to 1 */
    ck_assert_uint_eq(sz("0.0005KB"), 1);          /* 0.5 rounds half up */
    ck_assert_uint_eq(sz("18446744073709551615"), UINT64_MAX);
    ck_assert_uint_eq(sz("16777215.99999999999TiB"), 18446744073709551605ull);   /* 2^64 - 10.995 */
}
END_TEST

START_TEST(test_duration_units_in_seconds)
{
    ck_assert(dur("2ms") == 2e-3);
    ck_assert(dur("150us") == 150 * 1e-6);
    ck_assert(dur("150\xc2\xb5s") == 150 * 1e-6);
    ck_assert(dur("10ns") == 10 * 1e-9);
    ck_assert(dur("1s") == 1.0);
    ck_assert(dur("1.5 s") == 1.5);
    ck_assert(dur("2min") == 120.0);
}
END_TEST

START_TEST(test_bare_numbers_need_a_unit_for_bandwidth_and_duration)
{
    ck_assert_contains(bw_why("1000"), "missing unit");
    ck_assert_contains(bw_why("1000"), "ambiguous");
    ck_assert_contains(dur_why("5"), "missing unit");
    ck_assert_contains(sz_why("1.5"), "whole number of bytes");
}
END_TEST

START_TEST(test_negative_nan_inf_and_garbage_are_refused)
{
    ck_assert_contains(bw_why("-1Gbps"), "negative");
    ck_assert_contains(sz_why("-5"), "negative");
    ck_assert_contains(dur_why("-2ms"), "negative");
    ck_assert_contains(bw_why("+1Gbps"), "not a number");
    ck_assert_contains(bw_why("infGbps"), "not a number");
    ck_assert_contains(bw_why("inf"), "not a number");
    ck_assert_contains(bw_why("nan Gbps"), "not a number");
    ck_assert_contains(dur_why("NaN"), "not a number");
    ck_assert_contains(sz_why("GiB"), "not a number");
    ck_assert_contains(bw_why("."), "not a number");
    ck_assert_contains(bw_why(""), "empty");
    ck_assert_contains(bw_why("   "), "empty");
    ck_assert_contains(bw_why("0x10Gbps"), "unknown unit 'x10Gbps'");
    ck_assert_contains(bw_why("10Gbps extra"), "unknown unit");
    ck_assert_contains(bw_why("10 G bps"), "unknown unit 'G bps'");
    ck_assert_contains(bw_why("1,5Gbps"), "unknown unit ',5Gbps'");
    ck_assert_contains(sz_why("1e"), "unknown unit 'e'");
    ck_assert_contains(dur_why("2ms\n"), "unknown unit 'ms?'");
    const char *why = NULL;
    double d;
    ck_assert_int_eq(et_parse_bandwidth(NULL, &d, &why), -1);
}
END_TEST

START_TEST(test_unknown_units_suggest_the_nearest_and_list_valid_ones)
{
    const char *w = bw_why("10Gbsp");
    ck_assert_contains(w, "unknown unit 'Gbsp' (did you mean 'Gbps'?");
    ck_assert_contains(w, "valid units: bps, Kbps, Mbps, Gbps");
    ck_assert_contains(w, "GiB/s");
    ck_assert_contains(bw_why("10mbps"), "did you mean 'Mbps'?");   /* m is milli */
    ck_assert_contains(bw_why("10gb/s"), "did you mean 'Gb/s'?");   /* bits stay bits */
    ck_assert_contains(bw_why("10GB/S"), "did you mean 'GB/s'?");   /* bytes stay bytes */
    ck_assert_contains(sz_why("4gib"), "did you mean 'GiB'?");
    ck_assert_contains(sz_why("4GiBs"), "did you mean 'GiB'?");
    ck_assert_contains(sz_why("4G"), "valid units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB");
    ck_assert_contains(dur_why("2msec"), "unknown unit 'msec'");
    ck_assert_contains(dur_why("2 hours"), "valid units: ns, us, ms, s, min");
    ck_assert_contains(dur_why("2 Ms"), "did you mean 'ms'?");
    /* a long unit is cut in the message, never overflowing it */
    char longunit[300];
    memset(longunit, 'x', sizeof longunit - 1);
    longunit[0] = '1';
    longunit[sizeof longunit - 1] = '\0';
    ck_assert(strlen(bw_why(longunit)) < 320);
}
END_TEST

START_TEST(test_overflow_and_underflow_are_refused)
{
    ck_assert_contains(bw_why("1e400Gbps"), "too large");
    ck_assert_contains(bw_why("1e308Tbps"), "too large");
    ck_assert_contains(dur_why("1e-400s"), "too small");
    ck_assert_contains(dur_why("1e-310s"), "too small");
    ck_assert_contains(sz_why("18446744073709551616"), "too large");
    ck_assert_contains(sz_why("16777216TiB"), "too large");
    ck_assert_contains(sz_why("1e30"), "too large");
    ck_assert_contains(sz_why("12345678901234567890123"), "too many significant digits");
    ck_assert_uint_eq(sz("1e-50KiB"), 0);
    ck_assert_uint_eq(sz("100000000000000000000000e-5"), 1000000000000000000ull);
}
END_TEST

START_TEST(test_closest_name_suggests_only_near_names)
{
    static const char *const keys[] = {"bandwidth", "latency", "between", NULL};
    ck_assert_str_eq(et_closest_name("bandwith", keys, -1), "bandwidth");
    ck_assert_str_eq(et_closest_name("Latency", keys, -1), "latency");
    ck_assert_str_eq(et_closest_name("betwen", keys, 3), "between");
    ck_assert_ptr_null(et_closest_name("xyz", keys, -1));
    ck_assert_ptr_null(et_closest_name("", keys, -1));
    ck_assert_ptr_null(et_closest_name(NULL, keys, -1));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("units");
    TCase *tc = tcase_create("units");
    tcase_add_test(tc, test_bandwidth_bit_units_convert_to_bytes_per_second);
    tcase_add_test(tc, test_bandwidth_byte_units_si_and_binary);
    tcase_add_test(tc, test_number_forms_spacing_fraction_exponent_zero);
    tcase_add_test(tc, test_size_units_are_exact_integers);
    tcase_add_test(tc, test_duration_units_in_seconds);
    tcase_add_test(tc, test_bare_numbers_need_a_unit_for_bandwidth_and_duration);
    tcase_add_test(tc, test_negative_nan_inf_and_garbage_are_refused);
    tcase_add_test(tc, test_unknown_units_suggest_the_nearest_and_list_valid_ones);
    tcase_add_test(tc, test_overflow_and_underflow_are_refused);
    tcase_add_test(tc, test_closest_name_suggests_only_near_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
