/* The client subcommands: every `portico` subcommand but `serve` talks to
 * a running portico through the admin API (PORTICO_URL, PORTICO_TOKEN) and
 * prints tables for people or JSON (--json) for programs.
 *
 * Exit codes: 0 success, 1 the API answered an error (or health is
 * unhealthy), 2 bad usage, 3 the API could not be reached. */
#ifndef PTC_CLI_H
#define PTC_CLI_H

/* Runs the client subcommand argv[0] with its arguments.  Returns the exit
 * code.  Blocks on the network. */
int ptc_cli_main(int argc, char **argv);
/* True when name is a client subcommand. */
int ptc_cli_knows(const char *name);

#endif
