/*
 * server.h — `kvtier serve`: the prompt-caching service (Redis protocol, tenants, TTLs,
 * metrics). See docs/service.md for the protocol, the configuration and the data layout.
 *
 * The only entry point: the `kvtier` program's `serve` subcommand calls
 * server_main(argc - 1, argv + 1), so that argv[0] is "serve" and argv[1..] the flags.
 */
#ifndef KVT_SERVER_H
#define KVT_SERVER_H

/**
 * Run the service until SIGTERM/SIGINT (graceful shutdown) or a fatal start-up error.
 * @param[in] argc, argv  argv[0] is the program's name for messages ("serve" means
 *                        "kvtier"); the rest are flags (`--help` lists them). Configuration precedence: defaults < file < environment
 *                        (KVTIER_*) < flags.
 * @return the process exit status: 0 after a clean shutdown, 1 on a start-up or runtime
 *         failure, 2 on a usage or configuration error.
 */
int server_main(int argc, char **argv);

#endif
