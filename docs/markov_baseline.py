"""Bits per character of Markov chains on the embedded Tiny Shakespeare split (docs/forecasting.md).

Run: PYTHONPATH=src python docs/markov_baseline.py
"""

from seqlab.data import CharLMConfig, build_char_lm
from seqlab.models import MarkovModel

sp = build_char_lm(CharLMConfig())
v = sp.info["vocab"]


def dec(ids):
    return v.decode(ids.tolist())


train, val, test = dec(sp.train.ids), dec(sp.val.ids), dec(sp.test.ids)
print(len(train), len(val), len(test), len(v))
print("| order | alpha | val bits/char | test bits/char | test perplexity |")
print("|---:|---:|---:|---:|---:|")
for order in range(0, 6):
    for alpha in (1.0, 0.1, 0.01):
        m = MarkovModel(order, alpha).fit(train, vocab=v.itos)
        rv, rt = m.evaluate(val, context=train), m.evaluate(test, context=train + val)
        print(f"| {order} | {alpha} | {rv['bits_per_char']:.3f} | {rt['bits_per_char']:.3f} | {rt['perplexity']:.2f} |")
