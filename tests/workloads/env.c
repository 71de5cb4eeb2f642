/*
 * Integration-test workload: prints every environment variable, one
 * NAME=value per line, in the order the runtime supplied them.  It shows
 * exactly what a workload can see of its environment (nothing is inherited
 * from the host unless the runtime passes it).
 */
#include <stdio.h>

extern char **environ;

int main(void)
{
    for (char **e = environ; *e != NULL; e++) {
        puts(*e);
    }
    return 0;
}
