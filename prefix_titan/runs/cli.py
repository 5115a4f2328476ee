"""The commands' argument parser: argparse's, whose errors are one line that says where the
options are listed, instead of the usage block above the error, which buries a one-line refusal."""

import argparse


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the options)\n")
