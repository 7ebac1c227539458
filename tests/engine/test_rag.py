"""The RAG strategy: packing into a budget, lost-in-the-middle order, the prompt, the verdict,
citations, and answering end to end (FakeLLM; one test on the real model and embedder).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.generators import run_to_end
from engine.grounding import TermRarity
from engine.llm import ChatMessage, Role
from engine.prompts import (
    PASSAGE_SEPARATOR,
    RAG_SYSTEM,
    UNANSWERABLE,
    passage_label,
    rag_messages,
    render_passage,
)
from engine.strategies.base import AskContext
from engine.strategies.rag import (
    NOTHING_FITS,
    NOTHING_FOUND,
    Retrieval,
    answer_with_passages,
    order_for_attention,
    pack_passages,
    parse_verdict,
    passage_budget,
)
from engine.types import (
    AnswerDone,
    AnswerToken,
    Backend,
    ContextPlan,
    Preparing,
    PromptLayout,
    SourcesFound,
    Strategy,
    Verdict,
)
from ingest.types import Chunk, Document, Format
from models.catalog import ModelEntry
from retrieval.types import Hit
from tests.fake_llm import FakeLLM
from tests.model_fixtures import hand_plan, smollm2_profile

DOC_A = "a" * 64
DOC_B = "b" * 64
TITLES = {DOC_A: "Pride and Prejudice", DOC_B: "Frankenstein"}


def make_hit(
    rank: int,
    text: str | None = None,
    location: str = "",
    document_id: str = DOC_A,
    ordinal: int | None = None,
) -> Hit:
    ordinal = rank - 1 if ordinal is None else ordinal
    body = text if text is not None else f"passage text number {rank}"
    chunk = Chunk(
        ordinal=ordinal,
        text=body,
        start=ordinal * 1000,
        end=ordinal * 1000 + len(body),
        location=location,
        token_count=len(body.split()),
        section_ordinal=0,
    )
    return Hit(document_id, ordinal, 1.0 / rank, rank, chunk)


def make_plan(n_ctx: int = 2048) -> ContextPlan:
    return hand_plan(tokens_needed=n_ctx // 2, n_ctx=n_ctx, layout=PromptLayout.QUERY_AWARE)


BUDGET = 1000
MAX_ANSWER = 64


def ask(
    llm: FakeLLM,
    hits: Sequence[Hit],
    *,
    question: str = "Who rents Netherfield?",
    budget_tokens: int = BUDGET,
    load_seconds: float = 0.0,
    cancel: threading.Event | None = None,
) -> list[SourcesFound | Preparing | AnswerToken | AnswerDone]:
    """Run answer_with_passages to its end; its events."""
    stream = answer_with_passages(
        llm,
        question,
        hits,
        make_plan(),
        titles=TITLES,
        budget_tokens=budget_tokens,
        max_answer_tokens=MAX_ANSWER,
        load_seconds=load_seconds,
        cancel=cancel,
    )
    return list(stream)


def words(text: str) -> int:
    return len(text.split())


def cost(hit: Hit, widest: int) -> int:
    """What pack_passages charges for a hit, with a word-counting tokenizer."""
    rendered = render_passage(widest, hit.chunk.text, hit.chunk.location)
    return words(rendered + PASSAGE_SEPARATOR)


# -- packing ---------------------------------------------------------------------------------


def test_packing_takes_hits_in_rank_order_and_skips_those_that_do_not_fit() -> None:
    small = make_hit(1, "one two three")  # 3 words + "[4]" = 4
    big = make_hit(2, " ".join(["word"] * 30))  # 31
    medium = make_hit(3, " ".join(["word"] * 5))  # 6
    tiny = make_hit(4, "tiny")  # 2
    packed = pack_passages([tiny, big, medium, small], 12, words)
    assert [h.rank for h in packed] == [1, 3, 4]  # the big one is skipped, later ones fit
    assert sum(cost(h, 4) for h in packed) <= 12


def test_packing_never_exceeds_the_budget_and_an_empty_budget_packs_nothing() -> None:
    hits = [make_hit(rank, " ".join(["w"] * rank)) for rank in range(1, 8)]
    assert pack_passages(hits, 0, words) == []
    assert pack_passages([], 100, words) == []
    everything = sum(cost(h, 7) for h in hits)
    assert pack_passages(hits, everything, words) == hits
    assert pack_passages(hits, everything - 1, words) != hits


def test_packing_counts_titles_when_labels_carry_them() -> None:
    hit = make_hit(1, "alpha beta", location="p. 3")
    plain = words(render_passage(1, "alpha beta", "p. 3") + PASSAGE_SEPARATOR)
    assert pack_passages([hit], plain, words) == [hit]
    assert pack_passages([hit], plain, words, titles=TITLES) == []  # "Pride and Prejudice," adds 3


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=12),
    budget=st.integers(min_value=0, max_value=200),
)
def test_packing_is_greedy_and_within_budget(sizes: list[int], budget: int) -> None:
    hits = [make_hit(rank, " ".join(["w"] * size)) for rank, size in enumerate(sizes, 1)]
    packed = pack_passages(hits, budget, words)
    widest = len(hits)
    assert sum(cost(h, widest) for h in packed) <= budget
    assert [h.rank for h in packed] == sorted(h.rank for h in packed)
    # Greedy: every hit left out did not fit in what was left when its turn came.
    left = budget
    for hit in hits:
        if hit in packed:
            left -= cost(hit, widest)
        else:
            assert cost(hit, widest) > left


# -- ordering --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, []),
        (1, [1]),
        (2, [1, 2]),
        (3, [1, 3, 2]),
        (4, [1, 3, 4, 2]),
        (5, [1, 3, 5, 4, 2]),
        (6, [1, 3, 5, 6, 4, 2]),
    ],
)
def test_order_for_attention_puts_the_strongest_at_the_edges(
    count: int, expected: list[int]
) -> None:
    hits = [make_hit(rank) for rank in range(count, 0, -1)]  # given worst first: sorted by rank
    assert [h.rank for h in order_for_attention(hits)] == expected


# -- the prompt ------------------------------------------------------------------------------


def test_passage_labels_carry_number_title_and_location() -> None:
    assert passage_label(1, "p. 17", "Pride and Prejudice") == "[1] Pride and Prejudice, p. 17"
    assert passage_label(2, "Chapter 3") == "[2] Chapter 3"
    assert passage_label(3, "") == "[3]"
    assert render_passage(1, "  It is a truth.\n", "p. 1") == "[1] p. 1\nIt is a truth."


def test_rag_prompt_has_the_passages_the_question_twice_and_the_instruction() -> None:
    messages = rag_messages("Who owns Netherfield?", ["[1] p. 1\nfirst", "[2] p. 9\nsecond"])
    assert messages[0] == ChatMessage(Role.SYSTEM, RAG_SYSTEM)
    assert f"reply exactly: {UNANSWERABLE}" in RAG_SYSTEM
    assert "passages only" in RAG_SYSTEM and "location" in RAG_SYSTEM
    user = messages[1].content
    assert user.startswith("Question: Who owns Netherfield?")
    assert user.index("[1] p. 1\nfirst") < user.index("[2] p. 9\nsecond")
    assert user.endswith("Question: Who owns Netherfield?")


def test_the_prompt_shows_titles_only_for_several_documents() -> None:
    hits = [make_hit(1, "first text", "p. 17"), make_hit(2, "second text", "p. 40")]
    llm = FakeLLM(answers=["Bingley (p. 17)."])
    ask(llm, hits)
    prompt = llm.prompts[0]
    assert "[1] p. 17\nfirst text" in prompt
    assert "[2] p. 40\nsecond text" in prompt
    assert "Pride and Prejudice" not in prompt

    mixed = [make_hit(1, "first text", "p. 17"), make_hit(2, "monster", "Letter 4", DOC_B)]
    llm = FakeLLM(answers=["Bingley (p. 17)."])
    ask(llm, mixed)
    assert "[1] Pride and Prejudice, p. 17\nfirst text" in llm.prompts[0]
    assert "[2] Frankenstein, Letter 4\nmonster" in llm.prompts[0]


def test_passages_appear_in_attention_order() -> None:
    hits = [make_hit(rank, f"text of rank {rank}", f"p. {rank}") for rank in range(1, 5)]
    llm = FakeLLM(answers=["x"])
    ask(llm, hits)
    prompt = llm.prompts[0]
    positions = [prompt.index(f"text of rank {rank}") for rank in (1, 3, 4, 2)]
    assert positions == sorted(positions)
    assert "[1] p. 1\n" in prompt and "[4] p. 2\n" in prompt


# -- the verdict -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("unanswerable", Verdict.UNANSWERABLE),
        ("Unanswerable.", Verdict.UNANSWERABLE),
        ("  UNANSWERABLE  ", Verdict.UNANSWERABLE),
        ("**Unanswerable**", Verdict.UNANSWERABLE),
        ('"unanswerable"', Verdict.UNANSWERABLE),
        ("Answer: unanswerable", Verdict.UNANSWERABLE),
        ("Unanswerable: the passages do not say.", Verdict.UNANSWERABLE),
        ("Unanswerable, because no passage mentions a ship.", Verdict.UNANSWERABLE),
        ("The question is unanswerable from these passages.", Verdict.UNANSWERABLE),
        ("This is unanswerable.", Verdict.UNANSWERABLE),
        ("The passages do not mention a ship. Unanswerable.", Verdict.UNANSWERABLE),
        ("Mr. Bingley rents Netherfield (p. 3).", Verdict.ANSWERED),
        ("Darcy thought the riddle unanswerable (p. 3).", Verdict.ANSWERED),
        ("The riddle was unanswerable, said Darcy (p. 3).", Verdict.ANSWERED),
        ("Elizabeth's question seemed unanswerable to Jane.", Verdict.ANSWERED),
        ("answerable", Verdict.ANSWERED),
        ("", Verdict.ANSWERED),
    ],
)
def test_parse_verdict(answer: str, verdict: Verdict) -> None:
    assert parse_verdict(answer) is verdict


# -- citations -------------------------------------------------------------------------------


def answer_citations(answer: str, hits: Sequence[Hit]) -> list[str]:
    done = ask(FakeLLM(answers=[answer]), hits)[-1]
    assert isinstance(done, AnswerDone)
    return [citation.location for citation in done.answer.citations]


def test_the_answer_cites_passages_by_location_and_number_in_rank_order() -> None:
    # The matching rules themselves are tested in test_citations.py.
    stave = "Stave Two: The First of the Three Spirits"
    hits = [
        make_hit(1, "a", "p. 17"),
        make_hit(2, "b", "pp. 40–42"),
        make_hit(3, "c", stave),
        make_hit(4, "d", ""),
    ]  # shown as ranks 1, 3, 4, 2
    assert answer_citations("It is in Stave Two, on page 41.", hits) == ["pp. 40–42", stave]
    assert answer_citations("As [3] says", hits) == [""]  # the third passage shown
    assert answer_citations("passage 4 and p.17", hits) == ["p. 17", "pp. 40–42"]


def test_citations_carry_the_chunks_spans() -> None:
    hits = [make_hit(1, "one", "p. 1"), make_hit(2, "two two", "p. 2")]
    events = ask(FakeLLM(answers=["It is on p. 2."]), hits)
    sources, done = events[0], events[-1]
    assert isinstance(sources, SourcesFound) and isinstance(done, AnswerDone)
    assert [(c.start, c.end) for c in sources.citations] == [(0, 3), (1000, 1007)]
    assert [(c.start, c.end, c.chunk_ordinal) for c in done.answer.citations] == [(1000, 1007, 1)]


# -- answering end to end with the FakeLLM ---------------------------------------------------


def test_answer_streams_sources_then_tokens_then_the_answer() -> None:
    hits = [
        make_hit(1, "Netherfield is let at last to a young man of large fortune.", "p. 3"),
        make_hit(2, "His name is Bingley.", "p. 4"),
        make_hit(3, "Mr. Collins arrives.", "p. 60"),
    ]
    llm = FakeLLM(answers=["Mr. Bingley rents it (p. 4), a man of fortune (p. 3)."])
    events = ask(llm, hits)
    assert isinstance(events[0], SourcesFound)
    assert [c.location for c in events[0].citations] == ["p. 3", "p. 4", "p. 60"]
    assert events[0].citations[0].chunk_ordinal == 0
    assert events[0].citations[0].snippet.startswith("Netherfield is let")
    tokens = [e for e in events[1:-1] if isinstance(e, AnswerToken)]
    progress = [e for e in events[1:-1] if isinstance(e, Preparing)]
    assert len(tokens) + len(progress) == len(events) - 2
    done = events[-1]
    assert isinstance(done, AnswerDone)
    answer = done.answer
    assert "".join(t.text for t in tokens).strip() == answer.text
    assert answer.strategy is Strategy.RAG
    assert answer.verdict is Verdict.ANSWERED
    assert [c.location for c in answer.citations] == ["p. 3", "p. 4"]  # cited, rank order
    assert answer.document_ids == (DOC_A,)
    assert answer.plan == make_plan() and answer.layout is None
    assert answer.timings.generated_tokens == len(tokens)
    assert answer.timings.prompt_tokens > 0
    assert not answer.cancelled
    assert llm.calls[0].max_tokens == MAX_ANSWER


def test_an_answer_citing_nothing_cites_every_packed_passage() -> None:
    hits = [make_hit(1, "one", "p. 1"), make_hit(2, "two", "p. 2")]
    done = ask(FakeLLM(answers=["Mr. Bingley."]), hits)[-1]
    assert isinstance(done, AnswerDone)
    assert [c.location for c in done.answer.citations] == ["p. 1", "p. 2"]


def test_an_unanswerable_reply_is_the_verdict_and_cites_nothing() -> None:
    hits = [make_hit(1, "one", "p. 1")]
    done = ask(FakeLLM(answers=["Unanswerable."]), hits, load_seconds=1.5)[-1]
    assert isinstance(done, AnswerDone)
    assert done.answer.verdict is Verdict.UNANSWERABLE
    assert done.answer.citations == ()
    assert done.answer.timings.load_seconds == 1.5
    assert done.answer.timings.total_seconds >= 1.5


def test_no_hits_means_no_model_call() -> None:
    llm = FakeLLM()
    events = ask(llm, [], load_seconds=0.25)
    assert events[0] == SourcesFound(())
    assert len(events) == 2
    done = events[1]
    assert isinstance(done, AnswerDone)
    assert done.answer.verdict is Verdict.UNANSWERABLE
    assert done.answer.text == NOTHING_FOUND
    assert done.answer.strategy is Strategy.RAG
    assert done.answer.timings.total_seconds == 0.25
    assert llm.calls == []


def test_hits_that_do_not_fit_mean_no_model_call() -> None:
    llm = FakeLLM()
    events = ask(llm, [make_hit(1, " ".join(["w"] * 50))], budget_tokens=10)
    assert events[0] == SourcesFound(())
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert done.answer.text == NOTHING_FITS
    assert done.answer.verdict is Verdict.UNANSWERABLE
    assert llm.calls == []


def test_packing_drops_what_does_not_fit_the_budget() -> None:
    hits = [make_hit(1, " ".join(["w"] * 50), "p. 1"), make_hit(2, "short", "p. 2")]
    llm = FakeLLM(answers=["ok"])
    events = ask(llm, hits, budget_tokens=20)
    assert isinstance(events[0], SourcesFound)
    assert [c.location for c in events[0].citations] == ["p. 2"]
    assert "w w w" not in llm.prompts[0]


def test_cancelling_stops_between_tokens() -> None:
    cancel = threading.Event()
    answer = "one two three four five six seven eight nine ten eleven twelve"
    llm = FakeLLM(answers=[answer], delay=0.001)
    stream = answer_with_passages(
        llm,
        "Q?",
        [make_hit(1, "text", "p. 1")],
        make_plan(),
        titles=TITLES,
        budget_tokens=BUDGET,
        max_answer_tokens=MAX_ANSWER,
        cancel=cancel,
    )
    events: list[SourcesFound | Preparing | AnswerToken | AnswerDone] = []
    for event in stream:
        events.append(event)
        if isinstance(event, AnswerToken):
            cancel.set()
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert done.answer.cancelled
    streamed = "".join(e.text for e in events if isinstance(e, AnswerToken))
    # The first words are held until they show the reply is not the verdict; the stream
    # stops at the first token after the cancel.
    assert streamed.strip() == done.answer.text
    assert len(done.answer.text) < len(answer) and answer.startswith(done.answer.text)


def test_a_reply_that_opens_with_the_verdict_is_not_streamed() -> None:
    llm = FakeLLM(answers=["**Unanswerable.** The passages do not say."])
    events = ask(llm, [make_hit(1, "text", "p. 1")])
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.answer.verdict is Verdict.UNANSWERABLE
    assert not [e for e in events if isinstance(e, AnswerToken)]


def test_passage_budget_leaves_room_for_instructions_question_and_answer() -> None:
    llm = FakeLLM()
    overhead = llm.count_chat_tokens(rag_messages("Who?", []))
    budget = passage_budget(llm, "Who?", 2048, 256)
    assert 0 < budget < 2048 - 256 - overhead + 1
    assert passage_budget(llm, "Who?", 100, 256) == 0


# -- the real model on a real (tiny) library -------------------------------------------------

PLANTED = (
    "# The Lighthouse\n\n"
    "The lighthouse on Gull Rock was built in 1871 of grey granite. Its lamp burned whale"
    " oil until the keepers changed to kerosene.\n\n"
    "# The Keeper\n\n"
    "The keeper of the Gull Rock lighthouse was Tobias Fenwick. He kept a tame raven named"
    " Captain Pickle, and he played the fiddle every evening at sunset.\n\n"
    "# The Village\n\n"
    "The village of Saltmarsh lies across the bay. Its fishermen sell herring at the Tuesday"
    " market, and the church bell rings at noon.\n\n"
    "# The Storm\n\n"
    "In the great storm of 1902 the waves broke over the lantern room, but the lamp stayed"
    " lit all night and no ship was lost.\n"
)


@pytest.mark.model
@pytest.mark.embedder
@pytest.mark.slow
def test_the_bundled_model_answers_a_planted_fact_from_retrieved_passages(
    isolated_home: Path, tmp_path: Path
) -> None:
    from engine.llamacpp import LlamaCppLLM
    from engine.planner import plan_context
    from ingest.library import Library
    from ingest.pipeline import AddStatus, add_file
    from ingest.types import ChunkSettings
    from models.catalog import bundled_model_path, load_profile
    from models.errors import ModelNotFoundError
    from retrieval.dense import SentenceTransformerEmbedder
    from retrieval.hybrid import Searcher
    from retrieval.index_store import IndexStore
    from retrieval.windows import ChunkEncoder

    try:
        model_path = bundled_model_path()
    except ModelNotFoundError as missing:
        pytest.skip(str(missing))
    source = tmp_path / "gull-rock.md"
    source.write_text(PLANTED, encoding="utf-8")
    question = "What was the name of the keeper's raven?"
    with Library(isolated_home) as library:
        run_add = add_file(library, source, ChunkSettings(max_tokens=64, overlap=8))
        try:
            while True:
                next(run_add)
        except StopIteration as finished:
            assert finished.value.status is AddStatus.ADDED
            document = finished.value.document
        store = IndexStore(isolated_home, ChunkEncoder(SentenceTransformerEmbedder.bundled()))
        searcher = Searcher(library, store)
        list(searcher.prepare())
        hits = searcher.search(question, k=3)
        store.close()

    profile = load_profile(model_path, isolated_home / "cache")
    plan = plan_context(profile, 1024, 2**30, Backend.CPU)
    with LlamaCppLLM(profile, plan, threads=2) as llm:
        budget = passage_budget(llm, question, plan.n_ctx, 48)
        events = list(
            answer_with_passages(
                llm,
                question,
                hits,
                plan,
                titles={document.id: document.title},
                budget_tokens=budget,
                max_answer_tokens=48,
            )
        )
    sources = events[0]
    assert isinstance(sources, SourcesFound)
    assert "The Keeper" in [c.location for c in sources.citations]
    done = events[-1]
    assert isinstance(done, AnswerDone)
    assert "Captain Pickle" in done.answer.text, done.answer.text
    assert done.answer.verdict is Verdict.ANSWERED
    assert done.answer.timings.prompt_tokens <= 1024


# -- the retrieval window ----------------------------------------------------------------


def _retrieval_tokens_needed(question_tokens: int, window: int) -> tuple[int, int]:
    """What Retrieval.prepare asks of the plan for a question of `question_tokens` with
    eight 300-word hits and a configured window of `window`; and the model's window."""
    profile = smollm2_profile()
    hits = [make_hit(rank, " ".join(["w"] * 300)) for rank in range(1, 9)]
    retrieval = Retrieval(
        indexes=lambda document_id: iter(()),
        search=lambda question, document_id, k: hits[:k],
        top_k=8,
        window_tokens=lambda _: window,
        count_tokens=lambda _, text: len(text.split()),
        rarity=lambda document_id: TermRarity(chunk_count=1, document_frequency={}),
    )
    document = Document(
        id=DOC_A,
        title="Book",
        source_path="/book.txt",
        format=Format.TEXT,
        page_count=None,
        section_count=1,
        token_count=10_000,
        chunk_count=8,
        byte_size=1,
        added_at=datetime.now(UTC),
    )
    ask_context = AskContext(
        document=document,
        text="",
        sections=(),
        rendered="",
        document_tokens=10_000,
        model=ModelEntry("default", Path("model.gguf")),
        profile=profile,
        backend=Backend.CPU,
        memory_budget=1 << 30,
        question="Q " * question_tokens,
        question_tokens=question_tokens,
        max_answer_tokens=384,
    )
    needed = run_to_end(retrieval.prepare(ask_context, None), lambda _progress: None)
    return needed, profile.context_length


def test_a_long_question_widens_the_retrieval_window_so_passages_still_fit() -> None:
    short, _ = _retrieval_tokens_needed(question_tokens=20, window=4096)
    assert short <= 4096  # a short question keeps the configured window
    long_question = 2000  # 2 x 2000 + instructions + answer: more than 4096 alone
    needed, model_window = _retrieval_tokens_needed(question_tokens=long_question, window=4096)
    fixed = 2 * long_question + 96 + 384
    assert fixed > 4096
    passages = needed - fixed
    print(f"passages beside a {long_question}-token question: {passages} tokens")
    assert 4096 // 2 - 310 <= passages <= 4096 // 2 and needed <= model_window
