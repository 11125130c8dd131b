"""Other languages (issue 15): a text in a language no model covers is labelled `unknown`
and counted, never read as negative by another language's words, and never dropped as
off-topic; on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from pulse.models import text as mt
from pulse.models.feedback import other_language_items, period_items, refresh_insights
from pulse.models.relevance import judge
from pulse.models.text_language import UNDETERMINED, covered, detect, detect_one, unsupported
from pulse.sql.schema import Mention, Ticket
from tests.test_feedback_relevance import BRAND, WEEK, _land, _tickets

FRENCH = "Le rapport hebdomadaire ne marche pas depuis lundi, c'est inacceptable pour nous"
SPANISH = "El panel no funciona desde ayer y tenemos errores en la exportación"
GERMAN = "Der Export ist seit gestern nicht verfügbar und wir haben nur Fehler"
JAPANESE = "レポートが昨日から動きません。とても困っています。"
ENGLISH = "The export has been broken since yesterday, this is unacceptable"


def test_detect_reads_script_and_function_words() -> None:
    assert list(detect([FRENCH, SPANISH, GERMAN, JAPANESE, ENGLISH])) == [
        "fr", "es", "de", "ja", "en"]
    assert detect_one("Привет, отчёт не работает") == "ru"
    # too little to tell: undetermined, so treated as the model's own language
    assert detect_one("hmm") == detect_one("Salesforce sync") == detect_one("") == UNDETERMINED
    # links and handles are no words
    assert detect_one("@le_monde https://example.com/la/le/les") == UNDETERMINED
    assert covered([ENGLISH] * 19 + [FRENCH]) == {"en", "fr"}  # 5% is enough
    assert covered([ENGLISH] * 30 + [FRENCH]) == {"en"}
    assert list(unsupported([FRENCH, ENGLISH, "ok"], {"en"})) == [True, False, False]


def test_sentiment_of_an_uncovered_language_is_unknown_never_negative(pulse_home: object
                                                                      ) -> None:
    frame = mt.sentiment([FRENCH, SPANISH, JAPANESE, ENGLISH, "Thanks, great support!"])
    assert list(frame["label"][:3]) == ["unknown"] * 3
    assert (frame["method"][:3] == mt.OTHER_LANGUAGE).all() and (frame["score"][:3] == 0).all()
    assert list(frame["label"][3:]) == ["negative", "positive"]
    assert (frame["method"][3:] == "seed-model").all()


def test_a_model_trained_on_french_reads_french(pulse_home: object) -> None:
    from pulse.models.text_classifier import TextClassifier

    texts = [ENGLISH, "Great release, thanks", FRENCH, "Merci, le support est excellent et très"
             " rapide"] * 5
    model = TextClassifier().fit(texts, ["negative", "positive"] * 10)
    assert model.languages_ == {"en", "fr"}
    assert not unsupported([FRENCH], model.languages_)[0]


def test_relevance_never_drops_a_post_in_another_language() -> None:
    tickets = pd.DataFrame({"item_type": "ticket",
                            "item_id": [f"t{n}" for n in range(len(_tickets()))],
                            "text": [f"{s}\n{b}" for s, b in _tickets()]})
    posts = pd.DataFrame({
        "item_type": "mention", "item_id": ["fr", "off"], "account_id": None,
        "text": ["Quelqu'un sait si Salesforce est compatible avec la nouvelle version ?",
                 "Reached the acme of my climbing season this weekend, what a view"],
        "author_handle": ["amelie", "walker"], "from_brand": None, "in_reply_to_id": None})
    verdict = judge(pd.concat([posts, tickets], ignore_index=True), brand_handles=[BRAND])
    dropped = verdict.frame["dropped"].iloc[:2].tolist()
    assert pd.isna(dropped[0]) and dropped[1] == "off_topic"


def test_other_language_items_are_kept_counted_and_listed(engine: Engine,
                                                          pulse_home: object) -> None:
    from pulse.cli import app

    _land(engine)
    lineage = {"landed_at": WEEK, "updated_at": WEEK}
    with engine.begin() as conn:
        conn.execute(insert(Ticket), [{"ticket_id": "t-fr", "opened_at": WEEK + timedelta(hours=2),
                                       "account_id": "acc-a", "subject": "Rapport",
                                       "body": FRENCH, **lineage}])
        conn.execute(insert(Mention), [{"mention_id": "m-ja", "created_at": WEEK + timedelta(
            hours=3), "text": JAPANESE, "author_handle": "kenji", "platform": "x", **lineage}])
    refresh_insights(engine)
    end = WEEK + timedelta(days=7)
    found = other_language_items(engine, since=WEEK, until=end)
    assert dict(zip(found["item_id"], found["language"], strict=True)) == {
        "t-fr": "fr", "m-ja": "ja"}
    kept = period_items(engine, team=None, since=WEEK, until=end)
    assert {"t-fr", "m-ja"} <= set(kept["item_id"])  # still feedback
    sentiments = kept.set_index("item_id").loc[["t-fr", "m-ja"], "sentiment"]
    assert (sentiments == "unknown").all()
    result = CliRunner().invoke(app, ["feedback", "languages", "--since", str(WEEK.date()),
                                      "--until", str(end.date())])
    assert result.exit_code == 0, result.output
    assert "1 fr, 1 ja" in " ".join(result.output.split())
