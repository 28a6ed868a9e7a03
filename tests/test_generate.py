"""seqlab.generate: the config's checks, the processors, greedy/sampling/beam search on a hand-set
probability table (beam search against enumerating every sequence), cached == uncached decoding
for every generative model, the preallocated and static key/value caches, and the CLI."""

import itertools
import math
import warnings

import pytest
import torch

from seqlab.config import ConfigError
from seqlab.generate import ContextTooLong, GenerationConfig, GenerationConfigError, Uncached, generate, length_penalty
from seqlab.generate import processors as P
from seqlab.models import (
    GPT,
    GPTConfig,
    LanguageModelConfig,
    RNNLanguageModel,
    Seq2SeqRNN,
    Seq2SeqRNNConfig,
    Seq2SeqTransformer,
    Seq2SeqTransformerConfig,
)

from tiny_runs import train_tiny

BOS, EOS = 0, 1
NEG_INF = float("-inf")


# -- a model whose probabilities are set by hand ----------------------------------------------------


class TableModel:
    """P(y_t | y_{t-1}) from a fixed (V, V) log-probability table; <bos> = 0 (never predicted), <eos> = 1."""

    def __init__(self, logp: torch.Tensor):
        self.logp, self.vocab_size = logp, logp.shape[1]
        self.steps = 0  # decode_step calls, to count forwards

    def decoding_special_ids(self) -> dict:
        return {"bos": BOS, "eos": EOS, "pad": None}

    def begin_decoding(self, *, source=None, source_lengths=None, prompt=None, max_new_tokens):
        B = source.shape[0]
        return torch.zeros(B, dtype=torch.long), torch.full((B,), BOS)

    def decode_step(self, state, tokens, *, need_weights=False):
        self.steps += 1
        return self.logp[tokens].clone(), tokens, ({"prev": tokens.clone()} if need_weights else None)

    def reorder_state(self, state, index):
        return state.index_select(0, index)


def random_table(V: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(V, V, generator=g) * scale
    z[:, BOS] = NEG_INF
    return torch.log_softmax(z, dim=-1)


def enumerate_best(logp: torch.Tensor, max_len: int, alpha: float, count: int = 1):
    """Every complete sequence (ends with <eos>, or reaches max_len without one), ranked by log P / lp."""
    V = logp.shape[0]
    ranked = []
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(1, V), repeat=n):
            if EOS in seq[:-1] or (n < max_len and seq[-1] != EOS):
                continue
            prev, total = BOS, 0.0
            for v in seq:
                total, prev = total + logp[prev, v].item(), v
            ranked.append((total / ((5 + n) / 6) ** alpha, total, list(seq)))  # GNMT's lp, written out
    ranked.sort(key=lambda r: -r[0])
    return ranked[:count]


SOURCE = torch.zeros(1, 1, dtype=torch.long)  # the table ignores its source


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0, -0.5])
@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_best_sequence_by_enumeration(alpha, seed):
    # V = 5 (<bos>, <eos>, 3 words), up to 5 tokens: 4 + 16 + ... sequences; width 4**4 keeps every prefix.
    logp = random_table(5, seed)
    best = enumerate_best(logp, 5, alpha, count=3)
    out = generate(
        TableModel(logp), source=SOURCE, num_beams=256, num_return_sequences=3, max_new_tokens=5, length_penalty=alpha
    )
    for m, (score, total, seq) in enumerate(best):
        assert out.sequences[m, : out.lengths[m]].tolist() == seq
        assert out.scores[m].item() == pytest.approx(score, abs=1e-5)
        assert out.log_probs[m].item() == pytest.approx(total, abs=1e-5)
        assert out.token_log_probs[m].sum().item() == pytest.approx(total, abs=1e-5)
        assert bool(out.finished[m]) == (seq[-1] == EOS)


def test_length_penalty_changes_the_winner_and_short_beats_long_without_it():
    # <eos> is likely at once; the only long path is made of near-certain steps: log P prefers
    # stopping at once, lp with a large alpha prefers the long one.
    logp = torch.full((4, 4), NEG_INF)
    logp[BOS, EOS], logp[BOS, 2] = math.log(0.6), math.log(0.4)
    logp[2, 2], logp[2, EOS] = math.log(0.99), math.log(0.01)
    logp[3, 3] = 0.0
    model = TableModel(logp)
    short = generate(model, source=SOURCE, num_beams=4, max_new_tokens=6, length_penalty=0.0)
    long = generate(model, source=SOURCE, num_beams=4, max_new_tokens=6, length_penalty=3.0)
    assert short.sequences[0, : short.lengths[0]].tolist() == [EOS]
    assert long.sequences[0, : long.lengths[0]].tolist() == enumerate_best(logp, 6, 3.0)[0][2]
    assert long.lengths[0] > 1


def test_a_finished_hypothesis_does_not_settle_the_search_while_a_longer_one_can_still_win():
    # [<eos>] ends first (p 0.55); [a a a a a a] (p 0.45 * 0.999^5) scores far better under lp with
    # alpha = 3. Only a bound at the longest length (not the current one) keeps the search going.
    logp = torch.full((4, 4), NEG_INF)
    logp[BOS, EOS], logp[BOS, 2] = math.log(0.55), math.log(0.45)
    logp[2, 2], logp[2, EOS] = math.log(0.999), math.log(0.001)
    logp[3, 3] = 0.0
    best = enumerate_best(logp, 6, 3.0)[0]
    assert best[2] == [2] * 6
    assert length_penalty(6, 3.0) == pytest.approx((11 / 6) ** 3)
    for out in (
        beam_path(TableModel(logp), source=SOURCE, num_beams=1, max_new_tokens=6, length_penalty=3.0),
        generate(TableModel(logp), source=SOURCE, num_beams=2, max_new_tokens=6, length_penalty=3.0),
    ):
        assert out.sequences[0, : out.lengths[0]].tolist() == best[2]
        assert out.scores[0].item() == pytest.approx(best[0], abs=1e-5)


def test_finished_hypotheses_are_kept_while_the_beams_go_on():
    # Step 1: <eos> (p 0.5) ends a hypothesis; the beams continue through 2, whose continuations are all
    # poor. The search must return the early [<eos>], not the best of what was alive at the end.
    logp = torch.full((4, 4), NEG_INF)
    logp[BOS, EOS], logp[BOS, 2], logp[BOS, 3] = math.log(0.5), math.log(0.3), math.log(0.2)
    logp[2, 2], logp[2, 3] = math.log(0.5), math.log(0.5)
    logp[3, 2], logp[3, 3] = math.log(0.5), math.log(0.5)
    out = generate(TableModel(logp), source=SOURCE, num_beams=2, num_return_sequences=2, max_new_tokens=4)
    assert out.sequences[0, : out.lengths[0]].tolist() == [EOS] and bool(out.finished[0])
    assert out.log_probs[0].item() == pytest.approx(math.log(0.5))
    assert out.log_probs[1].item() == pytest.approx(math.log(0.3) + 3 * math.log(0.5))
    assert not bool(out.finished[1])  # ran out of steps


def test_beam_search_stops_once_nothing_can_beat_the_finished_hypotheses():
    logp = random_table(6, 7)
    logp[:, EOS] = math.log(0.9)  # <eos> almost always next
    logp = torch.log_softmax(logp, -1)
    model = TableModel(logp)
    generate(model, source=SOURCE, num_beams=2, max_new_tokens=50)
    assert model.steps < 10


def test_early_stopping_ends_at_num_beams_hypotheses():
    logp = random_table(6, 3, scale=0.5)
    lazy, eager = TableModel(logp), TableModel(logp)
    generate(lazy, source=SOURCE, num_beams=3, max_new_tokens=12, length_penalty=1.0)
    generate(eager, source=SOURCE, num_beams=3, max_new_tokens=12, length_penalty=1.0, early_stopping=True)
    assert eager.steps < lazy.steps


def beam_path(model, *, source=None, source_lengths=None, prompt=None, **settings):
    """generate's beam-search code path, also with one beam (generate itself sends num_beams=1 to greedy)."""
    from seqlab.generate.search import _Search

    cfg = GenerationConfig(**settings)
    special = model.decoding_special_ids()
    eos = tuple(i for i in (special["eos"],) if i is not None)
    banned = [special[k] for k in ("bos", "pad") if source is not None and special[k] is not None]
    if isinstance(model, torch.nn.Module):
        model.eval()
    with torch.no_grad():
        state, first = model.begin_decoding(
            source=source, source_lengths=source_lengths, prompt=prompt, max_new_tokens=cfg.max_new_tokens
        )
        context = prompt if prompt is not None else first.new_zeros(first.shape[0], 0)
        return _Search(model, cfg, eos, banned, special["pad"], model.vocab_size).beam(state, first, context)


@pytest.mark.parametrize("seed", range(3))
def test_beam_width_one_is_greedy_on_the_table(seed):
    logp = random_table(7, seed, scale=1.0)
    src = torch.zeros(3, 1, dtype=torch.long)
    greedy = generate(TableModel(logp), source=src, max_new_tokens=9)
    # Scores equal log P only without a length penalty (GenerationConfig's default is GNMT's 0.6).
    beam = beam_path(TableModel(logp), source=src, max_new_tokens=9, num_beams=1, length_penalty=0.0)
    assert torch.equal(beam.sequences, greedy.sequences) and torch.equal(beam.lengths, greedy.lengths)
    assert torch.allclose(beam.log_probs, greedy.log_probs) and torch.allclose(beam.scores, greedy.log_probs)


def test_min_new_tokens_masks_eos_until_then():
    logp = torch.log_softmax(torch.tensor([[NEG_INF, 3.0, 0.0, 0.0]] * 4), -1)  # <eos> by far the likeliest
    model = TableModel(logp)
    for kw in ({}, {"num_beams": 3}):
        out = generate(model, source=SOURCE, max_new_tokens=8, min_new_tokens=4, **kw)
        assert out.lengths[0] == 5 and out.sequences[0, 4] == EOS and (out.sequences[0, :4] != EOS).all()
    assert generate(model, source=SOURCE, max_new_tokens=8).lengths[0] == 1


# -- beam width 1 == greedy on real models --------------------------------------------------------


def tiny_gpt(positions="learned", block_size=80, seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(
        GPTConfig(
            vocab_size=11,
            block_size=block_size,
            d_model=32,
            num_heads=4,
            num_layers=2,
            dropout=0.1,
            positions=positions,
        )
    )


def tiny_transformer(positions="sinusoidal", seed=0, norm_first=True) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    return Seq2SeqTransformer(
        Seq2SeqTransformerConfig(
            src_vocab_size=13,
            tgt_vocab_size=12,
            max_src_len=9,
            max_tgt_len=70,
            d_model=32,
            num_heads=4,
            d_ff=64,
            num_encoder_layers=2,
            num_decoder_layers=2,
            positions=positions,
            norm_first=norm_first,
        )
    )


def tiny_seq2seq_rnn(seed=0) -> Seq2SeqRNN:
    torch.manual_seed(seed)
    return Seq2SeqRNN(Seq2SeqRNNConfig(src_vocab_size=13, tgt_vocab_size=12, embedding_size=8, hidden_size=16))


def sources(B=4, S=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 13, (B, S), generator=g)
    lengths = torch.randint(2, S + 1, (B,), generator=g)
    lengths[0] = S
    for b, L in enumerate(lengths.tolist()):
        src[b, L - 1], src[b, L:] = 2, 0  # <eos>, then <pad>
    return src, lengths


def test_beam_width_one_equals_greedy_on_gpt_and_seq2seq():
    gpt = tiny_gpt()
    prompt = torch.randint(0, 11, (3, 4), generator=torch.Generator().manual_seed(0))
    greedy = generate(gpt, prompt=prompt, max_new_tokens=20)
    assert torch.equal(beam_path(gpt, prompt=prompt, max_new_tokens=20, num_beams=1).sequences, greedy.sequences)
    for model in (tiny_transformer(), tiny_seq2seq_rnn()):
        src, lengths = sources()
        g = generate(model, source=src, source_lengths=lengths, max_new_tokens=30)
        beam = beam_path(model, source=src, source_lengths=lengths, max_new_tokens=30, num_beams=1)
        assert torch.equal(beam.sequences, g.sequences)
        assert torch.allclose(beam.log_probs, g.log_probs, atol=1e-5)


# -- the config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"top_p": 0.0, "temperature": 1.0}, "top_p"),
        ({"top_p": 1.5, "temperature": 1.0}, "top_p"),
        ({"temperature": -0.1}, "temperature"),
        ({"num_beams": 0}, "num_beams"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"min_new_tokens": 5, "max_new_tokens": 4}, "min_new_tokens"),
        ({"top_k": -1, "temperature": 1.0}, "top_k"),
        ({"min_p": 1.5, "temperature": 1.0}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"no_repeat_ngram_size": -2}, "no_repeat_ngram_size"),
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ({"num_return_sequences": 2}, "num_return_sequences"),  # greedy: every copy the same
        ({"num_beams": 3, "temperature": 0.7}, "temperature"),
        ({"top_k": 5}, "top_k"),  # a filter without sampling
        ({"banned_ids": (-1,)}, "banned_ids"),
        ({"stop_strings": ("",)}, "stop_strings"),
        ({"num_beams": 2, "stop_strings": ("x",)}, "stop_strings"),
        ({"temperature": float("nan")}, "temperature"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ],
)
def test_a_bad_setting_is_an_error_naming_its_key(settings, key):
    with pytest.raises(ConfigError) as err:
        GenerationConfig(**settings)
    assert isinstance(err.value, GenerationConfigError) and err.value.key == key
    assert str(err.value).startswith(key + " ")


def test_a_malformed_prompt_is_an_error_naming_the_fix():
    """They were IndexErrors from inside the model ("index out of range in self", "tuple index out of range")."""
    gpt = tiny_gpt()
    V = gpt.vocab_size
    cases = [
        (torch.tensor([1, 2, 3]), r"prompt must be \(B, P\) integer token ids with B, P >= 1, got torch.int64 of shape "
         r"\(3,\) \(one prompt: prompt\[None\]\)"),
        (torch.zeros(2, 0, dtype=torch.long), r"got torch.int64 of shape \(2, 0\)$"),
        (torch.rand(1, 3), r"got torch.float32 of shape \(1, 3\)$"),
        (torch.zeros(0, 3, dtype=torch.long), r"got torch.int64 of shape \(0, 3\)$"),
        (torch.ones(1, 3, dtype=torch.bool), r"got torch.bool of shape \(1, 3\)$"),
        (torch.tensor([[1, V]]), rf"the prompt holds token id {V}, outside the model's vocabulary \(0..{V - 1}\)"),
        (torch.tensor([[-1, 2]]), rf"the prompt holds token id -1, outside the model's vocabulary \(0..{V - 1}\)"),
    ]  # fmt: skip
    for prompt, message in cases:
        with pytest.raises(ValueError, match=message):
            generate(gpt, prompt=prompt, max_new_tokens=2)


@pytest.mark.parametrize("use_cache", [True, False])
def test_decoding_builds_no_autograd_graph(use_cache):
    """generate runs under no_grad: its scores are plain numbers, whatever the model's own decoding does."""
    torch.manual_seed(0)
    out = generate(tiny_transformer(), source=torch.tensor([[5, 6, 7, 2]]), max_new_tokens=4, use_cache=use_cache)
    lm = generate(tiny_gpt(), prompt=torch.tensor([[1, 2]]), max_new_tokens=3, use_cache=use_cache)
    for result in (out, lm):
        assert [t.requires_grad for t in (result.scores, result.log_probs, result.token_log_probs)] == [False] * 3


def test_good_settings_pass_and_generate_takes_them_by_keyword():
    GenerationConfig(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, num_return_sequences=3, seed=1)
    GenerationConfig(num_beams=5, length_penalty=0.6, num_return_sequences=5, early_stopping=True)
    with pytest.raises(ConfigError, match="top_p"):
        generate(TableModel(random_table(4, 0)), source=SOURCE, temperature=1.0, top_p=2.0)


# -- the processors -------------------------------------------------------------------------------------


def test_top_k_keeps_exactly_k_when_logits_tie_and_prefers_lower_ids():
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.0, 2.0, 0.5]])
    kept = P.top_k(logits, 3)
    assert torch.isfinite(kept).sum() == 3  # `logits >= 3rd value` would keep 4
    assert torch.isfinite(kept[0]).nonzero().flatten().tolist() == [1, 2, 3]
    assert torch.equal(kept[0, [1, 2, 3]], logits[0, [1, 2, 3]])
    assert torch.equal(P.top_k(logits, 0), logits) and torch.equal(P.top_k(logits, 9), logits)
    ties = torch.zeros(2, 10)
    assert (torch.isfinite(P.top_k(ties, 4)).sum(-1) == 4).all()


@pytest.mark.parametrize(
    "p, expect", [(0.5, [0]), (0.51, [0, 1]), (0.8, [0, 1]), (0.81, [0, 1, 2]), (1.0, [0, 1, 2, 3])]
)
def test_top_p_keeps_the_smallest_set_reaching_p(p, expect):
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    perm = torch.tensor([2, 0, 3, 1])  # shuffled vocabulary order: probs[:, perm]
    logits = probs[:, perm].log()
    kept = torch.isfinite(P.top_p(logits, p))[0]
    assert sorted(perm[kept].tolist()) == expect


def test_top_p_minimal_nucleus_on_random_rows():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 30, generator=g) * 2
    for p in (0.3, 0.7, 0.95):
        kept = torch.isfinite(P.top_p(logits, p))
        probs = torch.softmax(logits.double(), -1)
        for row in range(50):
            n = int(kept[row].sum())
            top = probs[row].sort(descending=True).values
            assert top[:n].sum() >= p - 1e-12 and (n == 1 or top[: n - 1].sum() < p)
            if n < 30:
                assert probs[row][kept[row]].min() >= probs[row][~kept[row]].max()


def test_min_p_keeps_tokens_above_a_fraction_of_the_top_probability():
    probs = torch.tensor([[0.5, 0.26, 0.24, 0.0001]])
    kept = torch.isfinite(P.min_p(probs.log(), 0.5))[0]
    assert kept.tolist() == [True, True, False, False]
    assert torch.isfinite(P.min_p(probs.log(), 0.0)).all()


@pytest.mark.parametrize("logit", [2.0, -2.0, 0.0])
def test_repetition_penalty_lowers_a_seen_token_for_positive_and_negative_logits(logit):
    logits = torch.tensor([[logit, 1.0, -1.0, 0.5]])
    seen = torch.tensor([[0]])
    before = torch.softmax(logits, -1)[0, 0]
    after = torch.softmax(P.repetition_penalty(logits, seen, 1.5), -1)[0, 0]
    assert after < before or (logit == 0.0 and after == before)
    naive = torch.softmax(torch.tensor([[logit / 1.5, 1.0, -1.0, 0.5]]), -1)[0, 0]
    if logit < 0:
        assert naive > before  # what dividing a negative logit does: the bug this penalty avoids
    untouched = P.repetition_penalty(logits, seen, 1.5)[0, 1:]
    assert torch.equal(untouched, logits[0, 1:])


def test_no_repeat_ngram_bans_completing_a_seen_ngram():
    context = torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 2]])
    banned = torch.isneginf(P.no_repeat_ngram(torch.zeros(2, 10), context, 3))
    assert banned[0].nonzero().flatten().tolist() == [7]  # (5, 6, 7) seen; context ends in 5, 6
    assert not banned[1].any()  # nothing starts with (4, 2)
    banned2 = torch.isneginf(P.no_repeat_ngram(torch.zeros(2, 10), context, 2))
    assert banned2[0].nonzero().flatten().tolist() == [7]  # (6, 7)
    assert banned2[1].nonzero().flatten().tolist() == [3]  # (2, 3)
    banned1 = torch.isneginf(P.no_repeat_ngram(torch.zeros(2, 10), context, 1))
    assert banned1[1].nonzero().flatten().tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("settings", [{}, {"temperature": 1.0, "seed": 0}, {"num_beams": 3}])
def test_no_repeat_ngram_never_emits_a_repeated_ngram(n, settings):
    gpt = tiny_gpt(seed=1)
    prompt = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(1))
    steps = 8 if n == 1 else 80  # n = 1 can use each of the 11 tokens once
    out = generate(gpt, prompt=prompt, max_new_tokens=steps, no_repeat_ngram_size=n, **settings)
    plain = generate(gpt, prompt=prompt, max_new_tokens=steps, **settings)
    for row in range(out.sequences.shape[0]):
        seq = torch.cat((prompt[row // out.num_return_sequences], out.sequences[row])).tolist()
        grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
        assert len(grams) == len(set(grams))
    assert any(
        len(set(tuple(s[i : i + n]) for i in range(len(s) - n + 1))) < len(s) - n + 1
        for s in (
            torch.cat((prompt[r // plain.num_return_sequences], plain.sequences[r])).tolist()
            for r in range(plain.sequences.shape[0])
        )
    )  # the rule had something to do


def test_banned_ids_are_never_generated():
    gpt = tiny_gpt()
    prompt = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(0))
    plain = generate(gpt, prompt=prompt, max_new_tokens=20)
    common = plain.sequences.flatten().mode().values.item()
    for kw in ({}, {"temperature": 1.0, "seed": 0}, {"num_beams": 3}):
        out = generate(gpt, prompt=prompt, max_new_tokens=20, banned_ids=(common,), **kw)
        assert (out.sequences != common).all()


def test_repetition_penalty_reduces_repeats_in_greedy_output():
    gpt = tiny_gpt(seed=2)
    prompt = torch.randint(0, 11, (4, 3), generator=torch.Generator().manual_seed(2))
    plain = generate(gpt, prompt=prompt, max_new_tokens=30)
    penal = generate(gpt, prompt=prompt, max_new_tokens=30, repetition_penalty=3.0)
    distinct = lambda out: sum(len(set(s.tolist())) for s in out.sequences)  # noqa: E731
    assert distinct(penal) > distinct(plain)


# -- sampling ---------------------------------------------------------------------------------------------


def test_same_seed_same_sample_and_another_seed_another():
    gpt = tiny_gpt()
    prompt = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(0))
    kw = dict(prompt=prompt, max_new_tokens=40, temperature=1.5, num_return_sequences=3)
    a, b, c = (generate(gpt, seed=s, **kw) for s in (7, 7, 8))
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.log_probs, b.log_probs)
    assert not torch.equal(a.sequences, c.sequences)
    assert not torch.equal(a.sequences[0], a.sequences[1])  # three different samples per prompt


def test_sampling_draws_only_from_the_filtered_set_and_follows_the_distribution():
    logp = torch.log(torch.tensor([[0.0, 0.1, 0.5, 0.25, 0.15]])).expand(5, 5).clone()  # same row after every token
    src = torch.zeros(4000, 1, dtype=torch.long)
    model = TableModel(logp)
    out = generate(model, source=src, max_new_tokens=1, temperature=1.0, seed=0)
    freq = torch.bincount(out.sequences[:, 0], minlength=5).float() / len(src)
    assert torch.allclose(freq, logp[0].exp(), atol=0.03)
    nucleus = generate(model, source=src, max_new_tokens=1, temperature=1.0, top_p=0.7, seed=0)
    assert set(nucleus.sequences[:, 0].tolist()) == {2, 3}  # 0.5 + 0.25 reaches 0.7
    k1 = generate(model, source=src[:50], max_new_tokens=1, temperature=1.0, top_k=1, seed=0)
    assert (k1.sequences[:, 0] == 2).all()
    mp = generate(model, source=src, max_new_tokens=1, temperature=1.0, min_p=0.3, seed=0)
    assert set(mp.sequences[:, 0].tolist()) == {2, 3, 4}  # 0.15 >= 0.3 * 0.5; 0.1 is not
    cold = generate(model, source=src, max_new_tokens=1, temperature=0.05, seed=0)
    assert (cold.sequences[:, 0] == 2).float().mean() > 0.99


def test_stop_strings_and_eos_ids_end_a_sequence():
    gpt = tiny_gpt()
    prompt = torch.randint(0, 11, (3, 3), generator=torch.Generator().manual_seed(0))
    plain = generate(gpt, prompt=prompt, max_new_tokens=30, temperature=1.0, seed=3)
    letters = "abcdefghijk"
    decode = lambda ids: "".join(letters[i] for i in ids)  # noqa: E731
    row = plain.sequences[0].tolist()
    stop = decode(row[5:7])
    out = generate(gpt, prompt=prompt, max_new_tokens=30, temperature=1.0, seed=3, stop_strings=(stop,), decode=decode)
    text = decode(out.sequences[0, : out.lengths[0]].tolist())
    assert text.endswith(stop) and stop not in text[:-1] and out.finished[0]
    assert text == decode(row)[: len(text)]
    eos = generate(gpt, prompt=prompt, max_new_tokens=30, eos_ids=(row[0],), temperature=1.0, seed=3)
    assert eos.lengths[0] == 1 and eos.finished[0]
    with pytest.raises(ValueError, match="decode"):
        generate(gpt, prompt=prompt, stop_strings=("a",))


def test_streamer_sees_every_token_as_it_is_generated():
    gpt = tiny_gpt()
    prompt = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(0))
    seen = [[], []]
    out = generate(
        gpt,
        prompt=prompt,
        max_new_tokens=12,
        temperature=1.0,
        seed=0,
        streamer=lambda rows, toks: [seen[r].append(t) for r, t in zip(rows.tolist(), toks.tolist())],
    )
    assert seen == out.sequences.tolist()


# -- cached == uncached -------------------------------------------------------------------------------------


def _step_both(model, reference, steps, g, **inputs):
    """Feed the same random tokens to the cached model and to the uncached reference; the worst logit gap."""
    s1, t1 = model.begin_decoding(max_new_tokens=steps, **inputs)
    s2, t2 = reference.begin_decoding(max_new_tokens=steps, **inputs)
    assert torch.equal(t1, t2)
    worst = 0.0
    with torch.no_grad():
        for _ in range(steps):
            l1, s1, _ = model.decode_step(s1, t1)
            l2, s2, _ = reference.decode_step(s2, t2)
            worst = max(worst, (l1 - l2).abs().max().item())
            t1 = t2 = torch.randint(3, model.vocab_size, t1.shape, generator=g)
    return worst


def _uncached_seq2seq_logits(model, src, lengths, prefix):
    """The reference written out: forward(x, y) with one extra target; its last logits follow the whole prefix."""
    y = torch.cat((prefix, torch.full_like(prefix[:, :1], 2)), dim=1)
    return model(src, y, source_lengths=lengths)[0][:, -1]


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_cached_equals_uncached_over_64_steps(positions):
    model = tiny_gpt(positions).eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 11, (3, 5), generator=g)
    assert _step_both(model, Uncached(model), 64, g, prompt=prompt) <= 1e-5
    for kw in ({}, {"num_beams": 3, "num_return_sequences": 2}, {"temperature": 1.0, "seed": 1}):
        a = generate(model, prompt=prompt, max_new_tokens=64, **kw)
        b = generate(model, prompt=prompt, max_new_tokens=64, use_cache=False, **kw)
        assert torch.equal(a.sequences, b.sequences)
        assert torch.allclose(a.token_log_probs, b.token_log_probs, atol=1e-5)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_seq2seq_transformer_cached_equals_uncached_over_64_steps(positions, norm_first):
    model = tiny_transformer(positions, norm_first=norm_first).eval()
    src, lengths = sources()
    g = torch.Generator().manual_seed(0)
    # Against forward(x, y) written out here (Uncached, --no-cache's decoder, is checked through generate below).
    state, tok = model.begin_decoding(source=src, source_lengths=lengths, max_new_tokens=64)
    prefix = tok[:, None]
    with torch.no_grad():
        for _ in range(64):
            logits, state, _ = model.decode_step(state, tok)
            assert (logits - _uncached_seq2seq_logits(model, src, lengths, prefix)).abs().max() <= 1e-5
            tok = torch.randint(3, 12, (4,), generator=g)
            prefix = torch.cat((prefix, tok[:, None]), dim=1)
    for kw in ({}, {"num_beams": 3, "num_return_sequences": 3, "length_penalty": 0.6}):
        a = generate(model, source=src, source_lengths=lengths, max_new_tokens=24, **kw)
        b = generate(model, source=src, source_lengths=lengths, max_new_tokens=24, use_cache=False, **kw)
        assert torch.equal(a.sequences, b.sequences)
        assert torch.allclose(a.log_probs, b.log_probs, atol=1e-4)


def test_recurrent_models_cached_equals_uncached():
    g = torch.Generator().manual_seed(0)
    lm = RNNLanguageModel(LanguageModelConfig(vocab_size=11, embedding_size=8, hidden_size=16)).eval()
    prompt = torch.randint(0, 11, (3, 5), generator=g)
    assert _step_both(lm, Uncached(lm), 32, g, prompt=prompt) <= 1e-5
    s2s = tiny_seq2seq_rnn().eval()
    src, lengths = sources()
    assert _step_both(s2s, Uncached(s2s), 32, g, source=src, source_lengths=lengths) <= 1e-5
    a = generate(s2s, source=src, source_lengths=lengths, max_new_tokens=20, num_beams=3)
    b = generate(s2s, source=src, source_lengths=lengths, max_new_tokens=20, num_beams=3, use_cache=False)
    assert torch.equal(a.sequences, b.sequences)


def test_batched_beam_search_equals_one_input_at_a_time():
    model = tiny_transformer("rotary")
    src, lengths = sources(B=5)
    kw = dict(max_new_tokens=20, num_beams=4, num_return_sequences=2, length_penalty=0.6)
    batch = generate(model, source=src, source_lengths=lengths, **kw)
    for b in range(5):
        one = generate(model, source=src[b : b + 1, : lengths[b]], **kw)
        T = one.sequences.shape[1]
        assert torch.equal(batch.sequences[2 * b : 2 * b + 2, :T], one.sequences)
        assert torch.allclose(batch.scores[2 * b : 2 * b + 2], one.scores, atol=1e-4)


# -- the key/value caches -------------------------------------------------------------------------------------


def test_decoder_caches_are_written_in_place_and_the_memory_projected_once():
    model = tiny_transformer().eval()
    src, lengths = sources()
    calls = {"k": 0}
    for layer in model.decoder.layers:
        layer.cross_attn.k_proj.register_forward_hook(lambda *a: calls.__setitem__("k", calls["k"] + 1))
    state, tok = model.begin_decoding(source=src, source_lengths=lengths, max_new_tokens=20)
    with torch.no_grad():
        logits, state, _ = model.decode_step(state, tok)
        cache = state.caches[0]
        ptr, room = cache.k.data_ptr(), cache.k.untyped_storage().nbytes()
        for _ in range(19):
            logits, state, _ = model.decode_step(state, logits.argmax(-1))
    assert calls["k"] == len(model.decoder.layers)  # once per layer for the whole sentence, not per step
    assert len(cache) == 20 and cache.k.data_ptr() == ptr  # the same buffer, filled in place
    assert room == 4 * model.config.num_heads * 20 * (32 // model.config.num_heads) * 4  # B*H*max_len*d_h floats


@pytest.mark.parametrize("filled", [3, 6])  # under half of max_len: only the filled part is copied
def test_kv_cache_index_select_reorders_rows_and_keeps_its_room(filled):
    from seqlab.nn import KVCache

    g = torch.Generator().manual_seed(0)
    cache = KVCache(max_len=10)
    ks, vs = torch.randn(3, 2, filled, 4, generator=g), torch.randn(3, 2, filled, 4, generator=g)
    for t in range(filled):
        cache.update(ks[:, :, t : t + 1], vs[:, :, t : t + 1])
    index = torch.tensor([2, 0, 0, 1])
    new = cache.index_select(index)
    assert len(new) == filled and new.max_len == 10
    assert torch.equal(new.k, ks[index]) and torch.equal(new.v, vs[index])
    assert torch.equal(cache.k, ks)  # the original is left as it was
    ptr = new.k.data_ptr()
    k, v = new.update(torch.ones(4, 2, 1, 4), torch.ones(4, 2, 1, 4))
    assert k.shape == (4, 2, filled + 1, 4) and k.data_ptr() == ptr and torch.equal(k[:, :, :filled], ks[index])


def test_gpt_cache_holds_prompt_plus_new_tokens_and_never_grows():
    model = tiny_gpt()
    prompt = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(0))
    state, tok = model.begin_decoding(prompt=prompt, max_new_tokens=30)
    storages = {c.k.untyped_storage().data_ptr() for c in state.caches}
    with torch.no_grad():
        for _ in range(30):
            logits, state, _ = model.decode_step(state, tok)
            tok = logits.argmax(-1)
    assert {c.k.untyped_storage().data_ptr() for c in state.caches} == storages
    assert all(c.max_len == 5 + 30 and len(c) == 35 for c in state.caches)


def test_a_prompt_longer_than_the_context_is_cut_from_the_left_with_a_warning():
    for positions in ("learned", "rotary"):
        model = tiny_gpt(positions, block_size=16)
        prompt = torch.randint(0, 11, (2, 40), generator=torch.Generator().manual_seed(0))
        with pytest.warns(ContextTooLong, match="40 tokens .* at most 16"):
            out = generate(model, prompt=prompt, max_new_tokens=5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ref = generate(model, prompt=prompt[:, -16:], max_new_tokens=5)
        assert torch.equal(out.sequences, ref.sequences)


def test_attention_weights_per_step_follow_each_returned_hypothesis():
    model = tiny_transformer()
    src, lengths = sources(B=2)
    out = generate(
        model,
        source=src,
        source_lengths=lengths,
        max_new_tokens=10,
        num_beams=3,
        num_return_sequences=2,
        output_attentions=True,
    )
    S = src.shape[1]
    for m in range(4):
        steps = out.attentions[m]
        assert len(steps) == out.lengths[m]
        for t, w in enumerate(steps):
            assert w["cross"].shape == (4, S)
            assert torch.allclose(w["cross"].sum(-1), torch.ones(4), atol=1e-5)
            assert (w["cross"][:, lengths[m // 2] :] == 0).all()  # padding gets no weight
            assert [x.shape for x in w["self"]] == [(4, t + 1)] * 2
    greedy = generate(model, source=src, source_lengths=lengths, max_new_tokens=10, output_attentions=True)
    assert [len(a) for a in greedy.attentions] == greedy.lengths.tolist()


# -- the command line, on tiny trained runs ---------------------------------------------------------------

TEXT = "to be or not to be, that is the question.\n" * 40


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A char-level GPT on a repeated line, a seq2seq Transformer on reversal, and a classifier (~10 s in all)."""
    tmp = tmp_path_factory.mktemp("runs")
    text = tmp / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    torch.set_num_threads(1)
    gpt = train_tiny(
        tmp,
        {"name": "gpt", "block_size": 32, "d_model": 32, "num_heads": 2, "num_layers": 2, "dropout": 0.0},
        {
            "name": "char_lm",
            "path": str(text),
            "seq_len": 32,
            "num_windows": 1600,
            "val_fraction": 0.1,
            "test_fraction": 0.0,
        },
        100,
    )
    s2s = train_tiny(
        tmp,
        {
            "name": "seq2seq_transformer",
            "d_model": 32,
            "num_heads": 2,
            "num_encoder_layers": 1,
            "num_decoder_layers": 1,
            "d_ff": 64,
            "dropout": 0.0,
        },
        {
            "name": "reverse",
            "num_symbols": 5,
            "min_len": 1,
            "max_len": 5,
            "num_train": 2000,
            "num_val": 50,
            "num_test": 50,
        },
        300,
    )
    clf = train_tiny(
        tmp,
        {"name": "rnn_classifier", "cell": "gru", "input_size": 8, "hidden_size": 8, "num_classes": 10},
        {"name": "digits", "view": "rows"},
        2,
    )
    return {"gpt": gpt, "s2s": s2s, "clf": clf}


def _run(capsys, *argv):
    from seqlab.cli import main

    capsys.readouterr()
    code = main(["generate", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_greedy_continues_the_prompt_and_streams_it(runs, capsys):
    code, out, err = _run(capsys, runs["gpt"], "--prompt", "to be or", "--temperature", "0", "--max-new-tokens", 20)
    assert code == 0, err
    assert out.startswith("to be or not to be, that")
    assert len(out.rstrip("\n")) == len("to be or") + 20
    code, cached, _ = _run(capsys, runs["gpt"], "--prompt", "that is", "--temperature", "0", "--max-new-tokens", 30)
    code, uncached, _ = _run(
        capsys, runs["gpt"], "--prompt", "that is", "--temperature", "0", "--max-new-tokens", 30, "--no-cache"
    )
    assert cached == uncached


def test_cli_sampling_flags_change_what_they_should(runs, capsys):
    base = (runs["gpt"], "--prompt", "t", "--max-new-tokens", 60)
    a = _run(capsys, *base, "--seed", 1, "--temperature", 3.0)[1]
    b = _run(capsys, *base, "--seed", 1, "--temperature", 3.0)[1]
    c = _run(capsys, *base, "--seed", 2, "--temperature", 3.0)[1]
    assert a == b and a != c  # same seed, same sample
    top1 = _run(capsys, *base, "--seed", 3, "--temperature", 3.0, "--top-k", 1)[1]
    greedy = _run(capsys, *base, "--temperature", 0)[1]
    assert top1 == greedy  # top-k 1 is greedy whatever the temperature
    tight = _run(capsys, *base, "--seed", 3, "--temperature", 3.0, "--top-p", 0.01)[1]
    assert tight == greedy
    assert _run(capsys, *base, "--seed", 3, "--temperature", 3.0, "--min-p", 1.0)[1] == greedy
    code, out, _ = _run(capsys, *base, "--seed", 0, "--num-return-sequences", 3, "--scores")
    assert code == 0 and out.count("--- sample") == 3 and out.count("[log P = ") == 3


def test_cli_repetition_flags(runs, capsys):
    base = (runs["gpt"], "--prompt", "to be", "--temperature", 0, "--max-new-tokens", 80)
    plain = _run(capsys, *base)[1].rstrip("\n")
    assert "to be, that" in plain[5:]
    ngram = _run(capsys, *base, "--no-repeat-ngram", 4)[1].rstrip("\n")
    grams = [ngram[i : i + 4] for i in range(len(ngram) - 3)]
    assert len(grams) == len(set(grams)) and ngram != plain
    assert _run(capsys, *base, "--repetition-penalty", 5.0)[1] != plain + "\n"
    beam = _run(capsys, *base, "--beam", 3, "--num-return-sequences", 2, "--scores")[1]
    assert beam.count("--- sample") == 2


def test_cli_translates_sources_with_beams_and_files(runs, capsys, tmp_path):
    run = runs["s2s"]
    code, out, err = _run(capsys, run, "--source", "abcde", "--scores")
    assert code == 0, err
    text, log_prob, score = out.rstrip("\n").split("\t")
    assert set(text) <= set("abcde") and float(log_prob) == float(score) <= 0  # greedy: score is log P
    code, out, _ = _run(capsys, run, "--source", "abcde", "--beam", 4, "--num-return-sequences", 3, "--scores")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 3 and len({r[0] for r in rows}) == 3
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    src = tmp_path / "in.txt"
    src.write_text("abc\nedcba\nab\na\n", encoding="utf-8")
    dst = tmp_path / "out.txt"
    code, out, err = _run(capsys, run, "--input", src, "--output", dst, "--beam", 3, "--batch-size", 2)
    assert code == 0, err
    lines = dst.read_text().splitlines()
    assert len(lines) == 4
    for line, source in zip(lines, ["abc", "edcba", "ab", "a"]):  # same as one at a time
        assert line == _run(capsys, run, "--source", source, "--beam", 3)[1].rstrip("\n")
    assert (
        _run(capsys, run, "--source", "abcde", "--max-new-tokens", 2)[1].rstrip("\n")
        == _run(capsys, run, "--source", "abcde")[1][:2]
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--prompt", "x", "--top-p", 1.5), "--top-p must be in (0, 1]"),
        (("--prompt", "x", "--temperature", -1), "--temperature must be >= 0"),
        (("--prompt", "x", "--beam", 0), "--beam must be >= 1"),
        (("--prompt", "x", "--beam", 2, "--num-return-sequences", 3), "--num-return-sequences must be <= num_beams"),
        (("--prompt", "x", "--temperature", 0, "--top-k", 5), "--top-k filters the sampled distribution"),
        (("--prompt", "x", "--repetition-penalty", 0), "--repetition-penalty must be > 0"),
        (("--prompt", "x", "--no-repeat-ngram", -1), "--no-repeat-ngram must be >= 0"),
        (("--prompt", "x", "--max-new-tokens", 0), "--max-new-tokens must be >= 1"),
        (("--prompt", "Z@"), "not in the model's vocabulary"),
        (("--prompt", ""), "at least one character"),
        (("--source", "abc"), "give --prompt TEXT"),
        (("--prompt", "x", "--input", "f"), "not allowed with argument"),
        (("--prompt", "x", "--batch-size", 0), "--batch-size must be >= 1"),
        (("--prompt", "x", "--top-k", "many"), "invalid int value"),
    ],
)
def test_cli_bad_flags_exit_2_naming_the_flag(runs, capsys, argv, message):
    code, _, err = _run(capsys, runs["gpt"], *argv)
    assert code == 2 and message in err, err


def test_cli_seq2seq_limits_and_non_generative_runs_exit_2(runs, capsys, tmp_path):
    code, _, err = _run(capsys, runs["s2s"], "--prompt", "abc")
    assert code == 2 and "give --source TEXT" in err
    code, _, err = _run(capsys, runs["s2s"], "--source", "abc", "--max-new-tokens", 500)
    assert code == 2 and "--max-new-tokens 500 is more than this model writes" in err
    code, _, err = _run(capsys, runs["s2s"], "--source", "abcabcabcabc")
    assert code == 2 and "model.max_src_len" in err
    code, _, err = _run(capsys, runs["clf"], "--prompt", "x")
    assert code == 2 and "cannot generate" in err and "language models (gpt, rnn_lm" in err and "seq2seq" in err
    code, _, err = _run(capsys, runs["gpt"], "--input", runs["gpt"] / "missing.txt")
    assert code == 2 and "cannot read --input" in err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("to be\nor not\n")
    code, _, err = _run(capsys, runs["gpt"], "--input", prompts, "--output", tmp_path / "." / "prompts.txt")
    assert code == 2 and "is the --input file: writing it would replace the inputs; give another --output" in err
    assert prompts.read_text() == "to be\nor not\n"


def test_cli_eval_with_beam_search_reports_exact_match_bleu_and_chrf(runs, capsys):
    import json

    from seqlab.cli import main

    capsys.readouterr()
    assert main(["eval", str(runs["s2s"])]) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert main(["eval", str(runs["s2s"]), "--beam", "4"]) == 0
    beam = json.loads(capsys.readouterr().out)
    for metrics in (greedy, beam):
        assert 0 <= metrics["test/exact_match"] <= 1 and 0 <= metrics["test/bleu"] <= 100
        assert 0 <= metrics["test/chrf"] <= 100
    assert greedy["test/exact_match"] > 0.5  # the run learned to reverse
    assert beam["test/beam"] == 4 and "test/beam" not in greedy
    assert beam["test/exact_match"] >= greedy["test/exact_match"] - 0.1
    assert (runs["s2s"] / "predictions-beam4.tsv").is_file() and (runs["s2s"] / "predictions.tsv").is_file()
    assert main(["eval", str(runs["gpt"]), "--split", "val", "--beam", "3"]) == 2
    assert "--beam applies to seq2seq runs" in capsys.readouterr().err


def test_generate_flags_are_generation_config_fields_with_its_defaults():
    import dataclasses

    from seqlab.cli import build_parser
    from seqlab.cli import generate as cli_generate

    args = build_parser().parse_args(["generate", "RUN", "--prompt", "x"])
    fields = {f.name: f.default for f in dataclasses.fields(GenerationConfig)}
    offered = {k: v for k, v in fields.items() if k not in cli_generate.LIBRARY_ONLY}
    assert set(offered) == {k for k in vars(args) if k in fields}  # every field but the library's own is a flag
    for key, default in offered.items():
        expected = None if key in cli_generate.RUN_DEFAULTS else default
        assert getattr(args, key) == (list(expected) if isinstance(expected, tuple) else expected), key
    assert cli_generate.flag("top_k") == "--top-k" and cli_generate.flag("num_beams") == "--beam"
    assert build_parser().parse_args(["eval", "RUN"]).length_penalty == GenerationConfig().length_penalty == 0.6
    flags = build_parser().parse_args(["generate", "RUN", "--prompt", "x", "--no-cache", "--stop", "a", "--stop", "b"])
    assert flags.use_cache is False and flags.stop_strings == ["a", "b"]


# -- one decoder: seqlab eval's outputs are seqlab generate's --------------------------------------------

BRIEF_SEQ2SEQ = {
    "rnn_attention": {
        "name": "seq2seq_rnn",
        "cell": "gru",
        "embedding_size": 16,
        "hidden_size": 16,
        "attention": "additive",
        "dropout": 0.0,
    },
    "transformer": {
        "name": "seq2seq_transformer",
        "d_model": 16,
        "num_heads": 2,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "d_ff": 32,
        "dropout": 0.0,
    },
}


def _argmax_writes_special_tokens(model, x, steps: int) -> bool:
    """Whether plain argmax decoding (nothing banned) writes <bos> or <pad> before <eos> in some row of x."""
    special = model.decoding_special_ids()
    with torch.no_grad():
        state, tokens = model.eval().begin_decoding(source=x, max_new_tokens=steps)
        done = torch.zeros(len(x), dtype=torch.bool)
        for _ in range(steps):
            logits, state, _ = model.decode_step(state, tokens)
            tokens = logits.argmax(-1)  # (B,)
            if bool((~done & ((tokens == special["bos"]) | (tokens == special["pad"]))).any()):
                return True
            done |= tokens == special["eos"]
    return False


@pytest.mark.parametrize("family", list(BRIEF_SEQ2SEQ))
def test_eval_predictions_equal_generate_at_temperature_zero_for_every_source(tmp_path, capsys, family):
    """A seq2seq run trained a few steps (its argmax still writes <bos>/<pad>): seqlab eval and seqlab
    generate --temperature 0 decode through the one decoder, so they write the same output for every source."""
    from seqlab.cli import main
    from seqlab.runs import build_run_data, load_generation_run
    from seqlab.train.seq2seq_metrics import decode_limit, read_predictions, unescape

    torch.set_num_threads(1)
    data = {"name": "reverse", "num_symbols": 5, "min_len": 1, "max_len": 6, "num_train": 64, "num_val": 16}
    run = train_tiny(tmp_path, BRIEF_SEQ2SEQ[family], {**data, "num_test": 48}, 2)  # 2 steps: <bos>, <pad> still win
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    rows = read_predictions(run / "predictions.tsv")
    assert len(rows) == 48
    loaded = load_generation_run(run)
    test = build_run_data(loaded.exp.data, run).test
    limit = decode_limit(loaded.model, test)  # eval stops at the split's longest target; generate is told so
    assert _argmax_writes_special_tokens(loaded.model, test.x, limit)  # the case the two decoders disagreed on
    sources, outputs = tmp_path / "sources.txt", tmp_path / "outputs.txt"
    sources.write_text("".join(source + "\n" for source, _, _ in rows), encoding="utf-8")
    argv = ["generate", str(run), "--input", str(sources), "--output", str(outputs), "--temperature", "0"]
    assert main([*argv, "--max-new-tokens", str(limit), "--batch-size", "5"]) == 0
    generated = [unescape(line) for line in outputs.read_text(encoding="utf-8").splitlines()]
    # The same ids; generate's text leaves out the <unk> the scored predictions keep (issue 23: no special
    # token in generated text; characters here, so removing it is the whole difference).
    assert generated == [hypothesis.replace("<unk>", "") for _, _, hypothesis in rows]
