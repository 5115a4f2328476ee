"""The commands' argument parser: argparse's, whose errors are one line that says where the
options are listed, instead of the usage block above the error, which buries a one-line refusal."""

import argparse


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
