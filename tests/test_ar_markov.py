"""ARModel against statsmodels and exact AR recursions; MarkovModel against counts worked out by hand."""

import math

import numpy as np
import pytest

from seqlab.data.series import parse_series_csv, read_embedded
from seqlab.models import ARModel, MarkovModel


def sunspots_float64() -> np.ndarray:
    raw = parse_series_csv(read_embedded("sunspots.csv"), "embedded:sunspots.csv", "SUNACTIVITY", "YEAR")
    return raw.values


# -- AR(tau) -----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 3, 9])
def test_ar_matches_statsmodels_autoreg_on_sunspots(order):
    sm = pytest.importorskip("statsmodels.api", reason="statsmodels is the reference (pip install -e .[dev])")
    from statsmodels.tsa.ar_model import AutoReg

    s = sunspots_float64()
    # The same series statsmodels ships: our embedded copy is theirs.
    np.testing.assert_array_equal(s, sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy())
    ref = AutoReg(s, lags=order, trend="c").fit().params  # [const, lag 1, ..., lag tau]
    ar = ARModel(order).fit(s)
    assert abs(ar.bias - ref[0]) < 1e-6
    np.testing.assert_allclose(ar.weights, ref[1:], rtol=0, atol=1e-6)


def test_ar_recovers_the_coefficients_of_a_noiseless_recursion():
    b, w = 0.5, np.array([1.2, -0.5, 0.1])  # stationary AR(3)
    s = [1.0, -2.0, 0.5]
    for _ in range(60):
        s.append(b + w @ np.array(s[-1:-4:-1]))  # x_{t-1}, x_{t-2}, x_{t-3}
    ar = ARModel(3).fit(np.array(s))
    assert ar.bias == pytest.approx(b, abs=1e-9)
    np.testing.assert_allclose(ar.weights, w, atol=1e-9)
    assert ar.residual_std < 1e-9
    # predict reads windows oldest first; forecast iterates the recursion from the history's end.
    np.testing.assert_allclose(ar.predict(np.array([s[-3:]])), [b + w @ np.array(s[-1:-4:-1])], atol=1e-9)
    future = list(s)
    for _ in range(5):
        future.append(b + w @ np.array(future[-1:-4:-1]))
    np.testing.assert_allclose(ar.forecast(np.array(s), 5), future[-5:], atol=1e-8)


def test_ar_predict_is_the_least_squares_formula_and_accepts_trainer_windows():
    s = sunspots_float64()
    ar = ARModel(2).fit(s)
    windows = np.stack([s[:-2], s[1:-1]], axis=1)  # (N, 2): x_{t-2}, x_{t-1}
    expected = ar.bias + ar.weights[0] * s[1:-1] + ar.weights[1] * s[:-2]
    np.testing.assert_allclose(ar.predict(windows), expected, rtol=1e-12)
    np.testing.assert_allclose(ar.predict(windows[:, :, None]), expected, rtol=1e-12)  # (N, tau, 1)
    # Least squares: the residuals are orthogonal to the intercept and every lag.
    resid = s[2:] - expected
    assert abs(resid.sum()) < 1e-8 * len(s) * s.std()
    assert abs(resid @ s[1:-1]) < 1e-6 * np.abs(s).sum()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: ARModel(0), "order must be an integer >= 1, got 0"),
        (lambda: ARModel(3).fit(np.arange(6.0)), "a series of 6 values is too short for AR(3): need at least"),
        (lambda: ARModel(2).fit(np.ones((4, 3))), "expected a 1-D series of shape (L,), got shape (4, 3)"),
        (lambda: ARModel(2).fit(np.array([1.0, np.nan, 2, 3, 4, 5])), "series contains NaN"),
        (lambda: ARModel(2).predict(np.ones((1, 2))), "ARModel is not fitted"),
        (
            lambda: ARModel(2).fit(np.arange(10.0) ** 2).predict(np.ones((4, 3))),
            "expected windows of shape (N, 2) or (N, 2, 1), got (4, 3)",
        ),
    ],
)
def test_ar_errors(call, message):
    with pytest.raises((ValueError, RuntimeError)) as err:
        call()
    assert message in str(err.value)


# -- Markov chains -----------------------------------------------------------------------------
# Corpus "abaab", V = {a, b}. Bigrams: ab twice, ba once, aa once; N(a) = 3 (a at 0, 2, 3 is
# followed by something), N(b) = 1 (the final b is not). Unigrams over all 5 symbols: a 3, b 2.
#   order 1, alpha 1:  P(a|a) = 2/5, P(b|a) = 3/5, P(a|b) = 2/3, P(b|b) = 1/3
#   first symbol (order 0): P(a) = 4/7, P(b) = 3/7


def test_markov_counts_and_probabilities_by_hand():
    m = MarkovModel(1, alpha=1.0).fit("abaab")
    assert m.symbols == ["a", "b"]
    assert (m.count("a", "b"), m.count("b", "a"), m.count("a", "a"), m.count("b", "b")) == (2, 1, 1, 0)
    assert (m.count("", "a"), m.count("", "b")) == (3, 2)
    assert m.prob("a", "a") == pytest.approx(2 / 5)
    assert m.prob("b", "a") == pytest.approx(3 / 5)
    assert m.prob("a", "b") == pytest.approx(2 / 3)
    assert m.prob("b", "b") == pytest.approx(1 / 3)
    assert m.prob("a") == pytest.approx(4 / 7)
    assert m.prob("b", "xxab"[2:]) == pytest.approx(1 / 3)  # only the last symbol of a context counts
    np.testing.assert_allclose(m.distribution("a"), [2 / 5, 3 / 5])


def test_markov_chain_rule_perplexity_and_bits_by_hand():
    m = MarkovModel(1, alpha=1.0).fit("abaab")
    # P("ba") = P(b) P(a|b) = 3/7 * 2/3 = 2/7
    assert m.log_likelihood("ba") == pytest.approx(math.log(2 / 7), abs=1e-12)
    r = m.evaluate("ba")
    assert r["tokens"] == 2
    assert r["nll_per_token"] == pytest.approx(-math.log(2 / 7) / 2, abs=1e-12)
    assert m.perplexity("ba") == pytest.approx(math.sqrt(7 / 2), abs=1e-12)
    assert m.bits_per_character("ba") == pytest.approx(math.log2(7 / 2) / 2, abs=1e-12)
    # With preceding context "a": P(b|a) P(a|b) = 3/5 * 2/3 = 2/5; the context is not scored.
    assert m.log_likelihood("ba", context="a") == pytest.approx(math.log(2 / 5), abs=1e-12)
    assert m.evaluate("ba", context="a")["tokens"] == 2


def test_markov_order_two_mle_and_unseen_events():
    m = MarkovModel(2, alpha=0.0).fit("abaab")
    # Trigrams: ab->a, ba->a, aa->b, each once; bb never seen -> uniform (the alpha -> 0 limit).
    assert m.prob("a", "ab") == 1.0 and m.prob("a", "ba") == 1.0 and m.prob("b", "aa") == 1.0
    assert m.prob("a", "bb") == 0.5
    # P("aba") = P(a) P(b|a) P(a|ab) = 3/5 * 2/3 * 1
    assert m.log_likelihood("aba") == pytest.approx(math.log(2 / 5), abs=1e-12)
    assert m.log_likelihood("abb") == -math.inf  # P(b|ab) = 0 under the MLE
    assert m.perplexity("abb") == math.inf


@pytest.mark.parametrize("order,alpha", [(0, 1.0), (1, 0.5), (2, 0.0), (3, 0.1)])
def test_markov_distributions_sum_to_one_for_every_context(order, alpha):
    m = MarkovModel(order, alpha=alpha).fit("the cat sat on the mat; the rat ate the hat")
    rng = np.random.default_rng(0)
    contexts = ["", "t", "th", "the", " ca", "hat"]
    contexts += ["".join(rng.choice(m.symbols, order)) for _ in range(20)]  # mostly unseen
    for ctx in contexts:
        assert m.distribution(ctx).sum() == pytest.approx(1.0, abs=1e-12)
        assert sum(m.prob(s, ctx) for s in m.symbols) == pytest.approx(1.0, abs=1e-12)


def test_markov_log_likelihood_is_the_sum_of_conditionals():
    text = "to be or not to be that is the question"
    m = MarkovModel(3, alpha=0.3).fit(text)
    held = "not to be or to be"
    by_steps = sum(math.log(m.prob(x, held[max(0, t - 3) : t])) for t, x in enumerate(held))
    assert m.log_likelihood(held) == pytest.approx(by_steps, abs=1e-10)


def test_markov_sampling_follows_the_transition_probabilities():
    m = MarkovModel(1, alpha=0.0).fit("ababab")
    assert m.sample(6, prefix="a", seed=0) == "bababa"  # a deterministic chain
    m = MarkovModel(1, alpha=1.0).fit("abaab")
    s = m.sample(20_000, prefix="a", seed=1)
    ids = "a" + s
    after_a = [ids[i + 1] for i in range(len(ids) - 1) if ids[i] == "a"]
    assert after_a.count("b") / len(after_a) == pytest.approx(3 / 5, abs=0.02)
    after_b = [ids[i + 1] for i in range(len(ids) - 1) if ids[i] == "b"]
    assert after_b.count("a") / len(after_b) == pytest.approx(2 / 3, abs=0.02)
    words = MarkovModel(1).fit(["the", "cat", "the", "dog"]).sample(3, seed=0)
    assert isinstance(words, list) and set(words) <= {"the", "cat", "dog"}


def test_markov_errors():
    m = MarkovModel(1).fit("abc")
    with pytest.raises(ValueError, match="symbol 'z' at position 1 is not in the model's vocabulary of 3 symbols"):
        m.log_likelihood("az")
    with pytest.raises(ValueError, match="order must be an integer >= 0"):
        MarkovModel(-1)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        MarkovModel(1, alpha=-0.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        MarkovModel(1).prob("a")
    with pytest.raises(ValueError, match="at most 1 symbols, got 2"):
        m.count("ab", "c")
