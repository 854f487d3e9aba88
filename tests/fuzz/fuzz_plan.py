"""Fuzz: Plan.load (UTF-8 text, Plan.from_yaml, path rebasing) on a plan file."""

import common

with common.instrumented():
    from inspector.mapping.plan import Plan


def TestOneInput(data: bytes) -> None:
    with common.expected():
        Plan.load(common.written(data, "plan.yaml"))


if __name__ == "__main__":
    common.main(TestOneInput)
