/*
 * serve_main.c — `kvtier-serve`: server_main() as a program of its own, for the tests
 * (which run before or without the `kvtier serve` subcommand) and for quick local runs.
 * `kvtier-serve ARGS` is the same as `kvtier serve ARGS`.
 */
#include "server.h"

int main(int argc, char **argv)
{
    return server_main(argc, argv);
}
