"""No code from files: every loader of the project reads safetensors, JSON or TOML.

The source is scanned (AST, not text) for the ways a file can run code when loaded: ``torch.load`` /
``torch.jit.load``, the pickle family of modules, ``weights_only=False``, ``allow_pickle=True``,
``np.load`` without ``allow_pickle=False``, and a Hugging Face ``from_pretrained`` of weights without
``use_safetensors=True`` (diffusers / transformers would fall back to a pickled ``.bin``). The behaviour
behind the one allowed exception — peft's ``PeftModel.from_pretrained``, reached only after
``runs.lora`` has checked that ``adapter_model.safetensors`` is there and a ``.bin`` is not — is
tested in test_found_cli.py (a pickled adapter is refused in one line).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "noiselevels"
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
# from_pretrained of things that are not weights (JSON / tokenizer files) need no use_safetensors
NOT_WEIGHTS = ("Tokenizer", "Processor", "Config", "Scheduler", "FeatureExtractor")
PEFT_ALLOWED = {"runs/lora.py"}  # peft reads adapter_model.safetensors once runs.lora checked it exists


def _name(node: ast.AST) -> str:
    """``torch.jit.load`` for the callee of a call, as written."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name and isinstance(k.value, ast.Constant):
            return k.value.value
    return None


def _problems(path: Path) -> list[str]:
    rel = path.relative_to(SRC).as_posix()
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [f"{where}: imports {m}" for m in mods if m.split(".")[0] in PICKLE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        callee = _name(node.func)
        if callee in ("torch.load", "torch.jit.load", "jit.load", "torch.hub.load"):
            out.append(f"{where}: {callee}")
        if _kw(node, "weights_only") is False or _kw(node, "use_safetensors") is False:
            out.append(f"{where}: {callee} loads pickles")
        if _kw(node, "allow_pickle") is True:
            out.append(f"{where}: {callee}(allow_pickle=True)")
        if callee in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not False:
            out.append(f"{where}: np.load without allow_pickle=False")
        if callee.endswith(".from_pretrained"):
            owner = callee.rsplit(".", 2)[-2]
            if owner == "PeftModel":
                if rel not in PEFT_ALLOWED:
                    out.append(f"{where}: PeftModel.from_pretrained outside runs/lora.py")
            elif not owner.endswith(NOT_WEIGHTS) and _kw(node, "use_safetensors") is not True:
                out.append(f"{where}: {callee} without use_safetensors=True")
    return out


def test_no_loader_can_run_code_from_a_file():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    problems = [p for f in files for p in _problems(f)]
    assert not problems, "\n".join(problems)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    """The scanner itself: each forbidden form is reported (a scan that finds nothing proves nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch, numpy as np\nfrom joblib import load\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x')\n"
        "np.load('x', allow_pickle=True)\nAutoModel.from_pretrained('d')\n"
        "DiffusionPipeline.from_pretrained('d', use_safetensors=False)\nPeftModel.from_pretrained(m, 'd')\n"
        "AutoTokenizer.from_pretrained('d')\nnp.load('x', allow_pickle=False)\n"
    )
    found = _problems_in(bad, tmp_path)
    assert [p.split(": ", 1)[1] for p in found] == [
        "imports pickle", "imports joblib", "torch.load", "torch.load", "torch.load loads pickles",
        "np.load without allow_pickle=False", "np.load(allow_pickle=True)",
        "np.load without allow_pickle=False",
        "AutoModel.from_pretrained without use_safetensors=True",
        "DiffusionPipeline.from_pretrained loads pickles",
        "DiffusionPipeline.from_pretrained without use_safetensors=True",
        "PeftModel.from_pretrained outside runs/lora.py",
    ]  # fmt: skip


def _problems_in(path: Path, root: Path) -> list[str]:
    global SRC
    old, SRC = SRC, root
    try:
        return _problems(path)
    finally:
        SRC = old
