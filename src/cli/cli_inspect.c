/* PLACEHOLDER: replaced by the real implementation before this lands. */
#include <stdio.h>
#include "cli/cli.h"

int cli_inspect(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "deepseek %s: not built yet\n", argv[0]);
    return 2;
}
