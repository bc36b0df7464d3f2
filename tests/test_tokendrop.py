"""TokenDrop + BucketSampler functions on real SST-2 sentences: word-split (PTB tokens, as the TSV has them)
and as the real MiniLM tokenizer splits them (WordPiece: ``n't`` becomes ``n ' t``)."""

import random
import string

import pytest

from autotradeoff.tasks.glue_data import encode, load_split
from autotradeoff.tasks.glue_model import load_tokenizer
from autotradeoff.techniques.tokendrop import (
    KNOBS,
    PROTECTED,
    STOPWORDS,
    batch_cap,
    bucket_batches,
    drop_count,
    drop_tokens,
    droppable_mask,
    epoch_batches,
    kept_positions,
    lr_scale,
    padding_fraction,
)

from conftest import DATA

OFF = {name: knob.default for name, knob in KNOBS.items()}
PAPER = OFF | {"batching": "bucket", "drop_mode": "mod-width"}


@pytest.fixture(scope="module")
def sentences():
    lines = (DATA / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:3001]
    return [line.split("\t")[0].split() for line in lines]


@pytest.fixture(scope="module")
def encoded():
    """3,000 real SST-2 training sentences through the real MiniLM tokenizer (with [CLS]/[SEP])."""
    return encode(load_tokenizer("minilm"), load_split("sst2", "train")[:3000], 64)


def negation_pieces(tokens):
    """Positions of negations: protected words, and every piece of an ``n't`` written ``X ' t`` or ``n't``."""
    lower = [t.lower() for t in tokens]
    found = {i for i, t in enumerate(lower) if t in PROTECTED or t == "n't"}
    for i in range(len(lower) - 1):
        if (lower[i], lower[i + 1]) == ("'", "t"):
            found |= {i - 1, i, i + 1}
    return found


def test_negations_are_never_dropped(encoded):
    rng = random.Random(0)
    with_negation = 0
    for example in encoded:
        negations = negation_pieces(example.tokens)
        with_negation += bool(negations)
        for _ in range(3):  # three epochs' draws, at the most aggressive setting
            mask = droppable_mask(example.tokens)
            kept = drop_tokens(list(range(len(example.ids))), mask, len(example.ids), rng)
            assert negations <= set(kept), [example.tokens[i] for i in negations - set(kept)]
    assert with_negation > 500  # measured: 605 of these 3,000 phrases hold a negation or a protected word
    assert droppable_mask(["[CLS]", "it", "does", "n", "'", "t", "work", ",", "isn", "'", "t", "it", "?", "[SEP]"]) == \
        [False, True, True, False, False, False, False, True, False, False, False, True, True, False]


def test_dropped_tokens_are_stopwords_or_punctuation_only(sentences):
    rng = random.Random(0)
    for words in sentences[:500]:
        mask = droppable_mask(words)
        ids = list(range(len(words)))
        n = drop_count(len(words), mode="mod-width", bucket_width=5)
        kept = drop_tokens(ids, mask, n, rng)
        removed = [words[i] for i in set(ids) - set(kept)]
        for word in removed:
            word = word.lower().lstrip("'") or word
            assert word in STOPWORDS or not word.strip(string.punctuation), word
            assert word not in PROTECTED and word != "n't"
        assert len(removed) == min(n, sum(mask))
        assert kept == sorted(kept)  # order preserved, input untouched
    assert ids == list(range(len(words)))


def test_no_sequence_loses_more_than_the_cap(encoded):
    lengths = [len(e.ids) for e in encoded]
    masks = [droppable_mask(e.tokens) for e in encoded]
    for cap in (0.0, 0.2, 0.5):
        kept = kept_positions(lengths, masks, PAPER | {"max_drop": cap}, random.Random(1))
        assert all(n - len(k) <= cap * n for n, k in zip(lengths, kept))
    uncapped = kept_positions(lengths, masks, PAPER | {"max_drop": 1.0}, random.Random(1))
    halved = sum(n > len(k) and n - len(k) >= (n - 2) / 2 for n, k in zip(lengths, uncapped))  # words: less [CLS], [SEP]
    assert halved > 150  # measured: 192 of 3,000 phrases lose half their words or more without the cap (0 at 0.2)


def test_mod_width_drop_makes_lengths_multiples_of_the_width_when_possible(sentences):
    rng = random.Random(1)
    hits = 0
    for words in sentences:
        mask = droppable_mask(words)
        n = drop_count(len(words), mode="mod-width", bucket_width=5)
        if sum(mask) >= n:
            assert len(drop_tokens(list(range(len(words))), mask, n, rng)) % 5 == 0
            hits += 1
    # most SST-2 phrases have enough stopwords/punctuation to drop to a multiple of 5; the rest are
    # short phrases with fewer droppable words than len mod 5
    assert hits > 0.55 * len(sentences)


def test_wordpiece_continuations_are_never_dropped():
    assert droppable_mask(["the", "un", "##able", "a", "##s", ",", "film"]) == [True, False, False, False, False, True, False]


def test_exact_buckets_give_zero_padding_on_real_sst2(encoded):
    lengths = [len(e.ids) for e in encoded]
    masks = [droppable_mask(e.tokens) for e in encoded]
    for own in (OFF | {"batching": "bucket"}, PAPER, PAPER | {"batch_growth": True}):
        for epoch in range(3):
            batches, kept = epoch_batches(lengths, masks, own, batch_size=32, epoch=epoch, rng=random.Random(epoch))
            assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every sequence once
            assert padding_fraction(batches, [len(k) for k in kept]) == 0.0
            cap = batch_cap(epoch, growth=own["batch_growth"], base=32)
            assert all(len(b) <= cap and len(b) * len(kept[b[0]]) <= own["token_budget"] for b in batches)
            by_length = {}
            for batch in batches:
                by_length.setdefault(len(kept[batch[0]]), []).append(len(batch))
            assert all(sorted(sizes, reverse=True)[:-1] == [max(sizes)] * (len(sizes) - 1) for sizes in by_length.values())  # one remainder
    plain = [list(range(i, min(i + 32, len(lengths)))) for i in range(0, len(lengths), 32)]
    assert padding_fraction(plain, lengths) > 0.5  # measured: random batches of 32 are about two-thirds padding


def test_bucket_batches_respect_cap_and_budget_and_are_shuffled():
    lengths = [3] * 10 + [40] * 7 + [7]
    batches = bucket_batches(lengths, token_budget=120, cap=4, rng=random.Random(0))
    assert sorted(map(len, batches)) == [1, 1, 2, 3, 3, 4, 4]  # 10 -> 4+4+2, 7 at 3 per 120 tokens -> 3+3+1, and 1
    again = bucket_batches(lengths, token_budget=120, cap=4, rng=random.Random(1))
    assert [sorted(b) for b in batches] != [sorted(b) for b in again]
    with pytest.raises(ValueError, match="token_budget and cap must be >= 1"):
        bucket_batches(lengths, token_budget=0, cap=4, rng=random.Random(0))


def test_schedules_and_bad_modes():
    assert [batch_cap(e, growth=True) for e in range(4)] == [64, 256, 512, 512]
    assert batch_cap(3, growth=False) == 64
    assert lr_scale(256, rule="sqrt") == 2.0 and lr_scale(256, rule="linear") == 4.0 and lr_scale(256, rule="none") == 1.0
    assert drop_count(23, mode="fixed", rate=0.1) == 2 and drop_count(23, mode="off") == 0
    assert drop_count(9, mode="mod-width", bucket_width=5) == 4 and drop_count(9, mode="mod-width", bucket_width=5, cap=0.2) == 1
    with pytest.raises(ValueError, match="drop mode must be one of"):
        drop_count(3, mode="random")


def test_all_off_is_plain_random_batching(sentences):
    masks = [droppable_mask(words) for words in sentences]
    lengths = [len(words) for words in sentences]
    batches, kept = epoch_batches(lengths, masks, OFF, batch_size=32, epoch=0, rng=random.Random(0))
    assert kept == [list(range(n)) for n in lengths] and {len(b) for b in batches[:-1]} == {32}
    grown, _ = epoch_batches(lengths, masks, PAPER | {"batch_growth": True}, batch_size=32, epoch=1, rng=random.Random(0))
    assert max(map(len, grown)) > 64  # the cap grew to 256
