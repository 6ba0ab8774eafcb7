/* cli_util: see cli_util.h. */
#include "cli/cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_check_output(const char *cmd, const char *out)
{
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "deepseek %s: %s: is a directory\n", cmd, out);
        return 2;
    }
    char dir[4096];
    const char *slash = strrchr(out, '/');
    size_t n = slash ? (size_t)(slash - out) : 1;
    if (n >= sizeof dir) {
        fprintf(stderr, "deepseek %s: %s: path too long\n", cmd, out);
        return 2;
    }
    memcpy(dir, slash ? out : ".", n);
    dir[n ? n : 1] = '\0';
    if (slash == out)
        dir[0] = '/';
    if (access(dir, W_OK) != 0) {
        fprintf(stderr, "deepseek %s: %s: cannot write in %s: %s\n", cmd, out, dir,
                strerror(errno));
        return 2;
    }
    return 0;
}
