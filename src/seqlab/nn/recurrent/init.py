"""Initialisations that let a gated recurrent layer remember: forget-gate bias, chrono, orthogonal.

torch draws every weight and bias of an RNN, LSTM or GRU from U(-1/sqrt(H), 1/sqrt(H)), so an
LSTM's forget gate starts at f_t ~ sigmoid(0) = 0.5: the cell keeps half of itself per step, and
both the memory and the gradient through it fall off like 0.5^k over k steps. The options below
only change the initial values (biases, and for "orthogonal" the recurrent weights), in place and
after construction, so every implementation (torch's kernel, seqlab's fused loop, the reference
equations) runs them unchanged.

Gate blocks are torch's: LSTM rows [i | f | g | o], GRU rows [r | z | n], each H rows. Where a
layer holds two biases (b_ih and b_hh, added together in every gate), what matters is their sum;
how each option splits it is said below. LayerNormLSTM holds one bias, b, which is set directly.

forget_bias = β (Gers, Schmidhuber & Cummins 2000, "Learning to forget"; Jozefowicz et al. 2015;
Keras's ``unit_forget_bias``): the keeping gate's bias is raised by β,

    LSTM:  b_f <- b_f + β              f_t = sigmoid(... + b_f) starts near sigmoid(β) (0.73 for β = 1)
    GRU:   b_z <- b_z + β              h_t = (1 - z_t) * n_t + z_t * h_{t-1}: z_t is torch's "keep" gate

β is added to b_ih's block (b_hh keeps torch's draw), so the sum b_ih + b_hh is torch's plus β.

init = "chrono" (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?", section 5),
with T_max = ``chrono_max``, the longest dependency the data can hold, one draw per unit j:

    LSTM:  b_f[j] = log(u_j),  b_i[j] = -log(u_j),  u_j ~ U(1, T_max - 1)
    GRU:   b_z[j] = log(u_j),                        u_j ~ U(1, T_max - 1)

A unit that keeps a fraction a = sigmoid(b) of its state per step forgets with time constant
1 / (1 - a) = 1 + e^b = 1 + u_j, so the units' memories spread over 2 .. T_max steps instead of
all sitting at 2. The LSTM's input gate gets the opposite bias, i_t ~ 1 - f_t, the leaky unit
c_t = f c_{t-1} + (1 - f) g_t that the paper derives the rule from. In the GRU, 1 - z_t already
plays the input gate, so the update gate's bias alone gives the same leaky unit
h_t = z h_{t-1} + (1 - z) n_t: z is the analogue of f, not r (the reset gate only scales what
h_{t-1} contributes to the candidate). The chrono biases are the whole sum: b_ih's block holds
them and b_hh's block is set to 0. The other blocks keep torch's draw. ``forget_bias`` adds to
chrono's b_f (b_z) when both are given.

init = "orthogonal" (Saxe, McClelland & Ganguli 2014; for RNNs Henaff, Szlam & LeCun 2016): each
gate's recurrent block W_h* (H x H_out) is a random (semi-)orthogonal matrix, so at the start
||W_h h|| = ||h|| and the linear part of the recurrence neither shrinks nor grows a signal.
Biases keep torch's draw.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

INITS = ("default", "chrono", "orthogonal")

# weight_hh_l0, bias_ih_l1_reverse (layers), weight_hh, bias_hh (cells), bias_l0 (LayerNormLSTM).
_PARAM = re.compile(r"^(?P<kind>weight_hh|bias_ih|bias_hh|bias)(?P<where>_l\d+(?:_reverse)?)?$")
_GATES = {4: "LSTM", 3: "GRU", 1: "RNN"}  # gate blocks per layer -> family


def _groups(module: nn.Module) -> dict[tuple[str, str], dict[str, nn.Parameter]]:
    """(module path, layer suffix) -> {"weight_hh" | "bias_ih" | "bias_hh" | "bias": parameter}, for every
    submodule with a ``hidden_size`` whose own parameters follow torch's recurrent naming."""
    groups: dict[tuple[str, str], dict[str, nn.Parameter]] = {}
    for path, sub in module.named_modules():
        if not isinstance(getattr(sub, "hidden_size", None), int):
            continue
        for name, p in sub.named_parameters(recurse=False):
            m = _PARAM.match(name)
            if m and not (m["kind"] == "bias" and m["where"] is None):  # a plain "bias" is a Linear's
                groups.setdefault((path, m["where"] or ""), {})[m["kind"]] = p
    return {k: v for k, v in groups.items() if "weight_hh" in v}


def _family(path: str, weight_hh: Tensor, hidden_size: int) -> str:
    G = weight_hh.size(0) // hidden_size
    if weight_hh.size(0) % hidden_size or G not in _GATES:
        raise ValueError(
            f"{path or 'module'}: weight_hh has {weight_hh.size(0)} rows for hidden_size {hidden_size}; "
            f"expected 1, 3 or 4 gate blocks (RNN, GRU, LSTM)"
        )
    return _GATES[G]


def chrono_bias(hidden_size: int, chrono_max: int, generator: torch.Generator | None = None) -> Tensor:
    """log(u), u ~ U(1, T_max - 1), one per unit: (H,) float64 (Tallec & Ollivier 2018)."""
    u = 1 + (chrono_max - 2) * torch.rand(hidden_size, generator=generator, dtype=torch.float64)
    return torch.log(u)


def check_init_options(init: str, forget_bias: float, chrono_max: int | None, *, key: str = "") -> None:
    """The options are valid on their own (``key``, e.g. "model.", prefixes the names in the errors)."""
    if init not in INITS:
        raise ValueError(f"{key}init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    if not math.isfinite(forget_bias):
        raise ValueError(f"{key}forget_bias must be a finite number, got {forget_bias}")
    if init == "chrono" and (chrono_max is None or chrono_max < 2):
        raise ValueError(
            f"{key}init = 'chrono' needs {key}chrono_max (T_max, the longest dependency in the data) >= 2, "
            f"got {chrono_max}"
        )


@torch.no_grad()
def init_recurrent_(
    module: nn.Module,
    *,
    init: str = "default",
    forget_bias: float = 0.0,
    chrono_max: int | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Apply ``init`` and ``forget_bias`` (see the module docstring) in place to every recurrent layer or cell in
    ``module`` (torch.nn or seqlab.nn RNN/LSTM/GRU, their cells, LayerNormLSTM); returns ``module``.

    ``init="default"`` with ``forget_bias=0`` changes nothing (torch's initialisation stands).
    ``generator`` makes the chrono and orthogonal draws reproducible apart from the global seed.
    Raises ValueError if ``module`` holds no recurrent parameters, if a gate option meets a plain RNN
    (no gate to bias) or a layer without biases.
    """
    check_init_options(init, forget_bias, chrono_max)
    if init == "default" and forget_bias == 0.0:
        return module
    groups = _groups(module)
    if not groups:
        raise ValueError(f"{type(module).__name__} holds no recurrent layer (no weight_hh parameter)")
    hidden = {path: getattr(sub, "hidden_size", None) for path, sub in module.named_modules()}
    for (path, where), params in groups.items():
        w_hh, H = params["weight_hh"], hidden[path]
        family = _family(path, w_hh, H)
        if init == "orthogonal":
            for block in w_hh.split(H, dim=0):  # one (H, H_out) block per gate
                block.copy_(nn.init.orthogonal_(torch.empty_like(block, device="cpu"), generator=generator))
        gated = init == "chrono" or forget_bias != 0.0
        if not gated:
            continue
        name = f"{path + '.' if path else ''}weight_hh{where}"
        if family == "RNN":
            raise ValueError(
                f"{name}: a plain RNN has no gate, so forget_bias and init = 'chrono' do not apply (use an LSTM or GRU)"
            )
        b_ih = params.get("bias_ih", params.get("bias"))  # LayerNormLSTM's single bias takes the whole sum
        b_hh = params.get("bias_hh")
        if b_ih is None:
            raise ValueError(f"{name}: the layer has no biases (bias=False), so there is no gate bias to set")
        keep = slice(H, 2 * H)  # block 1 either way: LSTM's f in (i, f, g, o), GRU's z in (r, z, n)
        if init == "chrono":
            b = chrono_bias(H, chrono_max, generator).to(b_ih)  # (H,)
            b_ih[keep] = b
            if b_hh is not None:
                b_hh[keep] = 0.0
            if family == "LSTM":  # the input gate opens as the forget gate closes: i_t ~ 1 - f_t
                b_ih[0:H] = -b
                if b_hh is not None:
                    b_hh[0:H] = 0.0
        b_ih[keep] += forget_bias
    return module
