/* A fresh process around cplatform_vmfunc_try (Sources/CPlatform), as a guest
 * agent is: "refused" makes VMFUNC calls outside a Xen guest (each is #UD)
 * and prints how many were reported refused; "other" installs the handler,
 * then raises a SIGILL that is not at the VMFUNC, which must end the
 * process by SIGILL as if the handler did not exist. */
#include "CPlatform.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "refused") == 0) {
        int refused = 0;
        for (uint32_t view = 0; view < 1000; view++) refused += cplatform_vmfunc_try(view % 10) == 0;
        printf("%d\n", refused);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "other") == 0) {
        (void)cplatform_vmfunc_try(1);
        raise(SIGILL);
        return 77; /* the handler swallowed a SIGILL that was not its own */
    }
    fprintf(stderr, "usage: vmfunc_sigill refused|other\n");
    return 2;
}
