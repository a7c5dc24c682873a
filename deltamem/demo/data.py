"""Synthetic chats for the demo: a user states personal facts among small talk, some change later, then is asked.

Everything comes from a seed through `random.Random`, so a seed always gives the same conversation. The same
generator makes the demo transcripts (`deltamem-chat demo-data`), the backbone's training text and the adapter's
training episodes; training draws seeds from `TRAIN_SEEDS` upwards, so transcripts made with smaller seeds are
never seen in training. The text is lower-case, without apostrophes, one word per vocabulary entry, so the demo
tokenizer covers all of it and decoding gives back the same words.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

#: Training draws seeds from here upwards; demo and evaluation transcripts use seeds below it.
TRAIN_SEEDS = 1_000_000


@dataclass(frozen=True)
class Slot:
    """One kind of personal fact: its values, how it is stated, changed and asked, and the answer sentence.

    Every answer's last word before the value is its own ("called", "named", "colour", "eating", …): the memory
    is read at that word, and in the first layer a word shared by several answers ("is") cannot say which fact to
    recall. With "is" before six of the values those six were recalled 17–28 % of the time, the others 55–91 %.
    """

    key: str
    values: tuple[str, ...]
    statements: tuple[str, ...]
    updates: tuple[str, ...]
    questions: tuple[str, ...]
    answer: str


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SLOTS: tuple[Slot, ...] = (
    Slot("name", _words("anna ben clara david emma felix grace henry iris jack kate leo maria noah olga paul rosa "
                        "sam tina victor wendy yusuf zara hugo"),
         ("my name is {v}.", "hello, i am {v}.", "you can call me {v}."),
         ("actually, please call me {v} from now on.",),
         ("what is my name?", "who am i?"), "you are {v}."),
    Slot("friend", _words("alice bruno carmen dmitri elena frank gina harold ines jonas laura marco nina oscar "
                          "petra quentin ruth simon tomas ursula vera walter xenia yara"),
         ("my best friend is {v}.", "my best friend is called {v}."),
         ("these days my best friend is {v}.",),
         ("who is my best friend?",), "you are best friends with {v}."),
    Slot("city", _words("paris london berlin madrid rome vienna lisbon dublin oslo prague warsaw athens cairo "
                        "tokyo seoul lima quito boston denver chicago toronto sydney nairobi mumbai"),
         ("i live in {v}.", "my home is in {v}."),
         ("i just moved, i live in {v} now.",),
         ("where do i live?", "which city do i live in?"), "you live in {v}."),
    Slot("country", _words("france spain italy norway sweden poland greece egypt kenya japan china india brazil "
                           "chile peru mexico canada ireland scotland portugal"),
         ("i grew up in {v}.", "i was raised in {v}."),
         ("sorry, i was wrong before, i grew up in {v}.",),
         ("where did i grow up?", "which country am i from?"), "you come from {v}."),
    Slot("dog", _words("rex buddy max rocky duke bella daisy luna milo bailey charlie biscuit pepper rusty scout "
                       "ziggy rufus teddy nala shadow"),
         ("my dog is called {v}.", "i have a dog named {v}."),
         ("we got a new dog, he is called {v}.",),
         ("what is my dog called?", "what is the name of my dog?"), "your dog is called {v}."),
    Slot("cat", _words("whiskers tiger smokey mittens nemo oreo simba misty ginger patches socks cleo tom kitty "
                       "pumpkin mocha sooty willow jasper hazel"),
         ("my cat is called {v}.", "i have a cat named {v}."),
         ("we adopted a new cat, she is called {v}.",),
         ("what is my cat called?", "what is the name of my cat?"), "your cat is named {v}."),
    Slot("colour", _words("red blue green yellow purple orange pink black white grey brown silver gold violet "
                          "teal navy"),
         ("my favourite colour is {v}.", "i love the colour {v}."),
         ("i changed my mind, my favourite colour is {v} now.",),
         ("what is my favourite colour?",), "you like the colour {v}."),
    Slot("number", tuple(str(n) for n in (3, 5, 7, 8, 9, 11, 12, 13, 14, 17, 19, 21, 23, 27, 31, 33, 37, 42, 47,
                                          51, 64, 77, 88, 99)),
         ("my lucky number is {v}.",),
         ("my new lucky number is {v}.",),
         ("what is my lucky number?",), "you said your lucky number was {v}."),
    Slot("job", _words("teacher nurse baker pilot farmer doctor lawyer painter plumber dentist chef writer "
                       "banker builder singer dancer gardener cashier tailor soldier"),
         ("i work as a {v}.", "my job is {v}."),
         ("i started a new job, i work as a {v} now.",),
         ("what is my job?", "what do i work as?"), "you work as a {v}."),
    Slot("food", _words("pizza pasta sushi curry soup salad noodles tacos burgers pancakes dumplings risotto "
                        "lasagne paella omelettes waffles kebabs chili porridge sandwiches"),
         ("my favourite food is {v}.", "i really love eating {v}."),
         ("these days my favourite food is {v}.",),
         ("what is my favourite food?", "what food do i love?"), "you love eating {v}."),
    Slot("sport", _words("tennis football golf hockey rugby cricket baseball volleyball badminton squash "
                         "swimming cycling rowing boxing skiing climbing"),
         ("i play {v} every week.", "my favourite sport is {v}."),
         ("i gave up my old sport, now i do {v}.",),
         ("what sport do i do?", "what is my favourite sport?"), "you play {v}."),
    Slot("drink", _words("tea coffee milk juice water cocoa lemonade cider smoothies espresso"),
         ("every morning i drink {v}.",),
         ("now i drink {v} every morning.",),
         ("what do i drink in the morning?",), "you drink {v} in the morning."),
)

SLOT_BY_KEY = {slot.key: slot for slot in SLOTS}

ACKS = ("nice, i will remember that.", "got it.", "thanks for telling me.", "noted.", "good to know.",
        "i will keep that in mind.", "lovely.", "okay, noted.")
UPDATE_ACKS = ("okay, i have updated that.", "thanks, noted the change.", "got it, i will use the new one.")

_ACTIONS = _words("cooked baked cleaned painted fixed bought found read watched visited sold washed built drew")
_THINGS = ("a cake", "the kitchen", "a new lamp", "an old chair", "a long book", "a funny film", "the garden",
           "a small boat", "the car", "some bread", "a big map", "the fence", "a red kite", "a nice vase",
           "the windows", "a short story", "a jigsaw puzzle", "the bike", "a wooden box", "some shelves")
_WHEN = ("today", "yesterday", "this morning", "last night", "at the weekend", "after work", "before lunch",
         "on monday", "on friday", "this afternoon")
_WEATHER = ("the weather is cold {w}.", "it is raining {w}.", "the sun is out {w}.", "it was windy {w}.",
            "it is very warm {w}.", "there was snow {w}.")
_FEELINGS = ("i feel tired {w}.", "i am in a good mood {w}.", "i am a bit bored {w}.", "i feel great {w}.",
             "i am busy {w}.")
_REQUESTS = (("can you recommend a film?", ("try a comedy.", "maybe an old western.", "a good thriller.")),
             ("any idea for dinner?", ("how about a stew?", "a simple soup is nice.", "try a rice dish.")),
             ("can you suggest a hobby?", ("painting is relaxing.", "try hiking.", "learn to knit.")),
             ("what should i read next?", ("a classic novel.", "try some poetry.", "a good biography.")),
             ("how can i sleep better?", ("go to bed early.", "avoid screens at night.", "read before bed.")),
             ("any tips for a rainy day?", ("bake something.", "watch a film.", "call a friend.")))
_REPLIES = ("that sounds lovely.", "nice, tell me more.", "i hope you enjoyed it.", "sounds like a busy day.",
            "well done.", "that is great.", "how nice.", "good for you.", "that sounds fun.", "oh, i see.")
#: Small talk that names a value in another role, so the memory cannot simply keep every value it sees.
_DISTRACTORS = ("i read an article about {city}.", "my colleague went to {country} on holiday.",
                "the cafe sells {food} on fridays.", "my neighbour painted the door {colour}.",
                "my nephew named his teddy {dog}.", "my sister met someone called {friend}.",
                "the bus i took was the {number}.", "my uncle watches {sport} on tv.")


@dataclass(frozen=True)
class Turn:
    """One chat message."""

    role: str
    content: str


@dataclass(frozen=True)
class Query:
    """A question about one fact: `value` is the expected answer, stated in message `source` (its newest value)."""

    slot: str
    question: str
    reply: str
    value: str
    source: int


@dataclass(frozen=True)
class Conversation:
    """A generated chat and the questions it supports, all asked after its last message."""

    seed: int
    turns: tuple[Turn, ...]
    queries: tuple[Query, ...]


@dataclass(frozen=True)
class Shape:
    """How conversations are drawn: fact count, small talk between facts, the gap before the questions, …

    `gap_words` is how many words of small talk must follow the newest fact before the questions (the demo
    transcripts use 0.75 words per token of the demo window, so every fact lies outside it); `extra_gap` adds a
    random number of exchanges on top.
    """

    facts: tuple[int, int] = (2, 4)
    between: tuple[int, int] = (0, 1)
    gap_words: int = 36
    extra_gap: tuple[int, int] = (0, 3)
    update_rate: float = 0.35
    distractor_rate: float = 0.15


def demo_shape(window: int) -> Shape:
    """The shape of demo transcripts for a window of `window` tokens: facts at least 0.75·window words back."""
    return Shape(gap_words=math.ceil(0.75 * window))


def _small_talk(rng: random.Random, distractor_rate: float) -> tuple[Turn, Turn]:
    kind = rng.random()
    if kind < distractor_rate:
        template = rng.choice(_DISTRACTORS)
        key = template.split("{", 1)[1].split("}", 1)[0]
        user = template.format(**{key: rng.choice(SLOT_BY_KEY[key].values)})
        return Turn("user", user), Turn("assistant", rng.choice(_REPLIES))
    if kind < 0.45:
        user = f"i {rng.choice(_ACTIONS)} {rng.choice(_THINGS)} {rng.choice(_WHEN)}."
    elif kind < 0.6:
        user = rng.choice(_WEATHER).format(w=rng.choice(_WHEN))
    elif kind < 0.75:
        user = rng.choice(_FEELINGS).format(w=rng.choice(_WHEN))
    else:
        question, answers = rng.choice(_REQUESTS)
        return Turn("user", question), Turn("assistant", rng.choice(answers))
    return Turn("user", user), Turn("assistant", rng.choice(_REPLIES))


def conversation(seed: int, shape: Shape | None = None) -> Conversation:
    """The conversation of `seed`: facts (some updated) among small talk, a gap of small talk, then questions."""
    shape = shape or Shape()
    rng = random.Random(seed)
    turns: list[Turn] = []
    slots = rng.sample(SLOTS, rng.randint(*shape.facts))
    current: dict[str, tuple[str, int]] = {}
    plan = [(slot, False) for slot in slots]
    if len(slots) > 1 and rng.random() < shape.update_rate:
        updated = rng.choice(slots[:-1])
        plan.insert(rng.randint(plan.index((updated, False)) + 2, len(plan)), (updated, True))
    for index, (slot, update) in enumerate(plan):
        if index:
            for _ in range(rng.randint(*shape.between)):
                turns.extend(_small_talk(rng, shape.distractor_rate))
        old = current.get(slot.key, ("", 0))[0]
        value = rng.choice([v for v in slot.values if v != old])
        template = rng.choice(slot.updates if update else slot.statements)
        current[slot.key] = (value, len(turns))
        turns.append(Turn("user", template.format(v=value)))
        turns.append(Turn("assistant", rng.choice(UPDATE_ACKS if update else ACKS)))
    newest = max(source for _, source in current.values())
    while sum(len(t.content.split()) for t in turns[newest + 1:]) < shape.gap_words:
        turns.extend(_small_talk(rng, shape.distractor_rate))
    for _ in range(rng.randint(*shape.extra_gap)):
        turns.extend(_small_talk(rng, shape.distractor_rate))
    queries = []
    for slot in rng.sample(slots, len(slots)):
        value, source = current[slot.key]
        queries.append(Query(slot.key, rng.choice(slot.questions), slot.answer.format(v=value), value, source))
    return Conversation(seed, tuple(turns), tuple(queries))


def document(seed: int, tokens: int, facts: int = 3) -> Conversation:
    """A long document for the demo to read once: small talk of about `tokens` tokens as one text (a sentence a
    line), with `facts` personal facts spread through it (fact i at depth (i + ½) / facts), then a question per fact.
    Its one turn is the document; every query's source is that turn."""
    rng = random.Random(seed)
    slots = rng.sample(SLOTS, facts)
    values = {slot.key: rng.choice(slot.values) for slot in slots}
    sentences: list[str] = []
    count = 0
    depths = [round((i + 0.5) / facts * tokens) for i in range(facts)]
    pending = list(zip(depths, slots))
    while count < tokens or pending:
        if pending and count >= pending[0][0]:
            slot = pending.pop(0)[1]
            sentence = rng.choice(slot.statements).format(v=values[slot.key])
        else:
            sentence = " ".join(turn.content for turn in _small_talk(rng, 0.15))
        sentences.append(sentence)
        count += _token_count(sentence)
    queries = tuple(Query(slot.key, rng.choice(slot.questions), slot.answer.format(v=values[slot.key]),
                          values[slot.key], 0) for slot in slots)
    return Conversation(seed, (Turn("user", "\n".join(sentences)),), queries)


def _token_count(text: str) -> int:
    """Tokens of `text` for the demo tokenizer: a word, or one of `. , ? !`, is a token."""
    return sum(len(word.rstrip(".,?!")) > 0 for word in text.split()) + sum(text.count(p) for p in ".,?!")


def conversations(first_seed: int, count: int, shape: Shape | None = None) -> Iterator[Conversation]:
    """`count` conversations from consecutive seeds."""
    for seed in range(first_seed, first_seed + count):
        yield conversation(seed, shape)


def corpus_text() -> Iterator[str]:
    """Every string the generator can emit, for building the vocabulary."""
    for slot in SLOTS:
        for template in (*slot.statements, *slot.updates, slot.answer):
            for value in slot.values:
                yield template.format(v=value)
        yield from slot.questions
    yield from ACKS
    yield from UPDATE_ACKS
    yield from _ACTIONS
    yield from _THINGS
    yield from _WHEN
    yield from (t.format(w="") for t in (*_WEATHER, *_FEELINGS))
    for question, answers in _REQUESTS:
        yield question
        yield from answers
    yield from _REPLIES
    yield from (t.split("{", 1)[0] + t.split("}", 1)[1] for t in _DISTRACTORS)
    yield "i"


__all__ = ["SLOTS", "SLOT_BY_KEY", "TRAIN_SEEDS", "Conversation", "Query", "Shape", "Slot", "Turn", "conversation",
           "conversations", "corpus_text", "demo_shape"]
