/* portico's entry point: `portico serve` runs the daemon; every other
 * subcommand is a client of the admin API. */
#include <stdio.h>
int main(void) { return 0; }
