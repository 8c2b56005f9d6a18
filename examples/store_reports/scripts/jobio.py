"""Where a Domino flow job finds its inputs and puts its outputs (the `flows` local provider may move them)."""
import os

INPUTS = os.environ.get("FLOWS_INPUTS_DIR", "/workflow/inputs")
OUTPUTS = os.environ.get("FLOWS_OUTPUTS_DIR", "/workflow/outputs")


def input_path(name):
    return os.path.join(INPUTS, name)


def read_value(name):
    with open(input_path(name)) as f:
        return f.read().strip()


def output_path(name):
    return os.path.join(OUTPUTS, name)


def write_value(name, value):
    with open(output_path(name), "w") as f:
        f.write(str(value))
