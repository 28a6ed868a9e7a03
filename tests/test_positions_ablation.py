"""The positional-encoding ablation of the seq2seq Transformer: without positions it cannot see order."""

import torch

from seqlab.models import Seq2SeqTransformer, Seq2SeqTransformerConfig

from tolerance import assert_close

V = 12


def test_transformer_without_positions_is_permutation_equivariant():
    """positions="none" (the ablation): permuting the source permutes the encoder's outputs the same way, so the
    model cannot tell an order from its reversal; with sinusoidal positions it can."""

    def build(positions):
        torch.manual_seed(0)
        cfg = Seq2SeqTransformerConfig(
            src_vocab_size=V, tgt_vocab_size=V, max_src_len=12, max_tgt_len=12, d_model=32, num_heads=2,
            d_ff=64, num_encoder_layers=2, num_decoder_layers=1, dropout=0.0, positions=positions,
        )  # fmt: skip
        return Seq2SeqTransformer(cfg).eval()

    x = torch.tensor([[4, 5, 6, 7, 8, 2]])  # (1, 6), <eos> last
    perm = torch.tensor([3, 1, 4, 0, 2, 5])  # shuffle the symbols, keep <eos> in place
    lengths = torch.tensor([6])
    with torch.no_grad():
        none = build("none")
        memory, _, _ = none.encode(x, lengths)  # (1, 6, d)
        shuffled, _, _ = none.encode(x[:, perm], lengths)
        assert_close(shuffled, memory[:, perm], "memory of the permuted source")
        sinusoidal = build("sinusoidal")
        memory, _, _ = sinusoidal.encode(x, lengths)
        shuffled, _, _ = sinusoidal.encode(x[:, perm], lengths)
        assert (shuffled - memory[:, perm]).abs().max() > 1e-2  # positions make the order visible
