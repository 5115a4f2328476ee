"""The commands' argument parser: argparse's, whose errors are one line that says where the
options are listed, instead of the usage block above the error, which buries a one-line refusal."""

import argparse

CONFIG_FLAGS = ("--job.config_file", "--job.config-file")
"""The flag that names a run's config file, in either spelling torchtitan's parser takes"""


def flag_values(args: list[str], flags) -> list[str | None]:
    """The values given to any of `flags` in `args`, in order, each as `--flag VALUE` or
    `--flag=VALUE` (None for a flag given last, without one)."""
    out = []
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if key in flags:
            out.append(value if eq else (args[i + 1] if i + 1 < len(args) else None))
    return out


def path_arg(text: str) -> str:
    """An argparse type for a file or folder: an empty one is refused (it named no place: one
    command worked for minutes and then failed, another did nothing)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder")
    return text


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage error (an option missing, misspelt or out of range): said with where the
        options are listed."""
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the options)\n")

    def refuse(self, message: str):
        """A refused input (a folder, a file, what they hold): the message alone, which names
        what to change; the options' list would not help."""
        self.exit(2, f"{self.prog}: error: {message}\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a command is (as Ctrl-C raises KeyboardInterrupt): a command that
    installs `terminate` as its SIGTERM handler unwinds as at Ctrl-C, and says which it was."""


def terminate(signum, frame):
    """The SIGTERM handler that raises Terminated."""
    raise Terminated
