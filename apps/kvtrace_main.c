/*
 * kvtrace_main.c — the kvtrace program: run a GGUF model with a full KV cache and
 * record its attention.  Each subcommand lives in its own file; this is the table.
 */
#include "cli.h"
#include "commands.h"

static const cli_command commands[] = {
    {"info",     "MODEL.gguf | TRACE.h5",          "describe a model or a trace",          cmd_info},
    {"tokenize", "MODEL TEXT [--chat] [--ids]",    "show token ids and pieces",            cmd_tokenize},
    {"run",      "MODEL PROMPT [options]",         "generate text with the full cache",    cmd_run},
    {"record",   "MODEL PROMPT -o TRACE.h5",       "record an attention trace",            cmd_record},
    {"verify",   "TRACE.h5",                       "check a trace's rows and shapes",      cmd_verify},
    {"generate", "MODEL PROMPT --policy P --budget B", "generate under live eviction",    cmd_generate},
    {"devices",  "",                               "list CPU threads and CUDA devices",    cmd_devices},
};

static const cli_program program = {
    .name = "kvtrace",
    .tagline = "Record full-cache attention traces of GGUF language models (HDF5).",
    .commands = commands,
    .n_commands = (int)(sizeof commands / sizeof commands[0]),
    .footer = "example:\n  kvtrace record models/SmolLM2-135M-Instruct.Q4_1.gguf \"Hello\" -o t.h5\n"
              "docs: README.md, docs/TRACE_FORMAT.md\n",
};

int main(int argc, char **argv) { return cli_main(&program, argc, argv); }
