import os
import pickle

import pytest
import torch

from seqlab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seqlab.utils import atomic_write


def test_round_trip(tmp_path):
    payload = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 7, "model_config": {"cell": "lstm"}}
    path = save_checkpoint(tmp_path / "c" / "last.pt", payload)
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], payload["model"]["w"]) and back["step"] == 7
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes, not 0600


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def crash(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_code_carrying_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _RunsCode()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "bad.pt")
