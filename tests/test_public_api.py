"""The public API as scripts use it: every name in `inspector.__all__` keeps what it is, called
twice in one fresh interpreter, before and after every submodule has been imported."""

from __future__ import annotations

import json
import textwrap

from subproc import python

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys, tempfile
    import inspector
    from inspector.demo import build_demo

    demo = build_demo(tempfile.mkdtemp())
    src, tgt = str(demo.source), str(demo.target)
    out = tempfile.mkdtemp()

    def _joint_module():
        import torch
        t = inspector.open(tgt)
        names = [n for n in t if n.startswith("joint.")]
        module = torch.nn.Module()
        module.joint = torch.nn.Module()
        for n in names:
            *path, leaf = n.split(".")[1:]
            owner = module.joint
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, torch.nn.Module())
                owner = getattr(owner, part)
            owner.register_parameter(leaf, torch.nn.Parameter(torch.zeros(t[n].shape)))
        return module

    def calls(round_):
        plan = inspector.propose(src, tgt)
        return {
            "open": lambda: len(inspector.open(tgt)),
            "diff": lambda: inspector.diff(src, tgt).counts(),
            "hash_tensors": lambda: len(inspector.hash_tensors(inspector.open(tgt))),
            "checkpoint_digest": lambda: str(
                inspector.checkpoint_digest(inspector.hash_tensors(inspector.open(tgt)))),
            "compare_tensors": lambda: inspector.compare_tensors(
                inspector.open(tgt), "joint.pred.weight", inspector.open(tgt), "joint.pred.weight"
            ).n_diff,
            "tensor_stats": lambda: inspector.tensor_stats(
                inspector.open(tgt), "joint.pred.weight").numel,
            "propose": lambda: len(plan.entries),
            "Plan": lambda: (plan.save(f"{out}/plan{round_}.yaml"),
                             len(inspector.Plan.load(f"{out}/plan{round_}.yaml").entries))[1],
            "load_rules": lambda: len(inspector.load_rules("ddp")),
            "apply": lambda: inspector.apply(
                plan, f"{out}/out{round_}.nemo", accept_proposed=True).verification.ok,
            "convert": lambda: inspector.convert(tgt, f"{out}/conv{round_}.safetensors").verified,
            "average": lambda: inspector.average(
                [tgt, tgt], f"{out}/avg{round_}.nemo", weights=[1, 2]).verified,
            "load_into": lambda: len(inspector.load_into(_joint_module(), tgt).loaded),
            "check": lambda: inspector.check(tgt, against=tgt).passed,
            "scan": lambda: inspector.scan(tgt).passed,
        }

    def run(round_):
        done = {}
        for name, call in calls(round_).items():
            obj = getattr(inspector, name)
            assert callable(obj) and not isinstance(obj, type(sys)), (name, obj)
            done[name] = repr(call())
        return done

    first = run(0)
    again = run(1)
    for mod in pkgutil.walk_packages(inspector.__path__, "inspector."):
        if ".tui" in mod.name or mod.name.endswith("__main__"):
            continue
        importlib.import_module(mod.name)
    after = run(2)
    names = sorted(n for n in inspector.__all__ if not n[0].isupper() or n == "Plan")
    print(json.dumps({"first": first, "again": again, "after": after, "names": names}))
    """
)


def test_every_public_name_works_on_every_call_in_any_import_order():
    out = python("-c", SCRIPT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["first"] == result["again"] == result["after"]
    callables = {n for n in result["names"] if n not in ("__version__",)}
    assert callables <= set(result["first"]), callables - set(result["first"])
