import os
import pickle
import random

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
    with pytest.raises(CheckpointError, match=r"bad.pt is damaged and cannot be read \(16 bytes, not the zip"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut off by a full disk or an interrupted copy
        lambda data: b"",
        lambda data: bytes(random.Random(0).randrange(256) for _ in range(len(data))),  # overwritten
        lambda data: b"<html>404 Not Found</html>\n",  # a failed download saved as the file
        lambda data: data[:30] + bytes(200) + data[230:],  # a zip whose first entry's data is zeroed
    ],
    ids=["cut-off", "empty", "random", "html", "zeroed"],
)
def test_a_damaged_checkpoint_says_so_and_names_the_others(tmp_path, damage):
    """Never a traceback, nor the "objects that are not plain tensors" refusal (whose advice, to load
    it without weights_only, is wrong for a damaged file): the error says it is damaged and which
    checkpoints beside it can be used instead."""
    save_checkpoint(tmp_path / "best.pt", {"step": 1})
    save_checkpoint(tmp_path / "last.pt", {"step": 2, "w": torch.ones(100)})
    (tmp_path / "last.pt").write_bytes(damage((tmp_path / "last.pt").read_bytes()))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "last.pt")
    message = str(caught.value)
    assert message.startswith(f"checkpoint {tmp_path / 'last.pt'} is damaged and cannot be read (")
    assert message.endswith("; other checkpoints beside it: best.pt") and "\n" not in message
    assert load_checkpoint(tmp_path / "best.pt") == {"step": 1}


def test_rng_states_of_more_gpus_than_this_machine_has_restore_what_it_has(monkeypatch):
    """A checkpoint from an 8-GPU machine resumed on a 1-GPU one: cuda:0's state is restored, the rest
    skipped (torch.cuda.set_rng_state_all would index past the devices and raise IndexError)."""
    from seqlab.train.checkpoint import rng_state, set_rng_state

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    monkeypatch.setattr(
        torch.cuda, "get_rng_state_all", lambda: [torch.full((8,), i, dtype=torch.uint8) for i in range(8)]
    )
    state = rng_state()
    set_rng_state(state)
    assert len(restored) == 1 and restored[0][1] == 0 and torch.equal(restored[0][0], torch.zeros(8, dtype=torch.uint8))


def test_a_checkpoint_that_cannot_be_opened_is_not_called_damaged(tmp_path, monkeypatch):
    """Permissions (EACCES) are no damage: the file may be fine, and the message must not send the user to
    another checkpoint. (Root reads any file, so the refusal to open is simulated.)"""
    import seqlab.train.checkpoint as checkpoint

    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint, "open", refuse, raising=False)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"cannot read checkpoint {path}: Permission denied"
