/*
 * cli — the subcommands of the one `edgetrain` binary. Each takes the argv
 * after the subcommand name (argv[0] is the subcommand) and returns the
 * process exit code: 0 success, 1 runtime failure, 2 bad usage or input.
 * Each prints its own --help.
 */
#ifndef ET_CLI_H
#define ET_CLI_H

int cmd_plan(int argc, char **argv);          /* orchestrator/cmd_plan.c */
int cmd_run(int argc, char **argv);           /* orchestrator/cmd_run.c */
int cmd_prepare_data(int argc, char **argv);  /* orchestrator/cmd_prepare.c */
int cmd_eval(int argc, char **argv);          /* orchestrator/cmd_eval.c */
int cmd_worker(int argc, char **argv);        /* workers/cmd_worker.c */
int cmd_report(int argc, char **argv);        /* orchestrator/cmd_report.c */
int cmd_testbed(int argc, char **argv);       /* orchestrator/cmd_testbed.c */

/* Usage error helper: prints "edgetrain: <cmd>: <msg> (try 'edgetrain <cmd> --help')"
 * and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
