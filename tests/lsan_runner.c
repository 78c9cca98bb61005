/*
 * lsan_runner.c — LeakSanitizer's suppressions for the test binary's own runner.
 *
 * Criterion's runner process (not the test workers: BoxFort starts those with BXFI_MAP
 * in their environment) leaks a few 48-byte blocks of its own when tests run in
 * parallel (--jobs 2; Criterion 2.4.1, Debian 12), which the sanitizer build reports
 * after the suite and fails `make test` on.  The suppression applies to the runner
 * only: every test runs in a worker, where any leak is still reported.
 */
#include <stdlib.h>

const char *__lsan_default_suppressions(void);

const char *__lsan_default_suppressions(void)
{
    return getenv("BXFI_MAP") ? "" : "leak:libcriterion.so\n";
}
