"""Settings from the environment (and an optional `.env` file)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root (or the installed package's parent); relative paths resolve from the
#: current directory, as a user would expect from a command-line tool.
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: pulse/core/settings.py


class Settings(BaseSettings):
    """Every knob Pulse reads, with its environment variable `PULSE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PULSE_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    home: Path = Field(default=Path("var"), description="Outbox files, models, reports")
    database_url: str = Field(default="", description="SQLAlchemy URL of the warehouse")
    batch_rows: int = Field(default=50_000, ge=1, description="Rows per landing batch")
    sqlite_cache_mib: int = Field(
        default=32, ge=1, description="SQLite page cache per connection, for the warehouse and "
        "for temporary (staging) tables each; bounds a landing's memory on SQLite")
    ingest_worker: str = Field(
        default="sqlite", description="Databases (comma-separated: sqlite, postgresql; empty "
        "for none) on which a big file of new events is read and validated in a second process "
        "while its rows are inserted")
    ingest_worker_max_load: float | None = Field(
        default=None, ge=0, description="No ingest worker while the one-minute load average "
        "is at or above this (default: the cores less one half): the two processes pay only "
        "when each has a core")
    ingest_worker_min_mib: float = Field(
        default=8.0, ge=0, description="Files smaller than this land in one process (the "
        "ingest worker's start costs more than it saves)")
    max_future_skew_hours: float = Field(
        default=24.0, ge=0, description="How far in the future an event timestamp may lie"
    )
    backfill_lag_days: float = Field(
        default=3.0, ge=0, description="An ingest run whose new rows happened a median of "
        "more than this many days before they landed, over a span of more than this many days, "
        "is a backfill: with basis auto its rows count from when they happened"
    )

    silent_no_contact_days: int = Field(
        default=30, ge=1, description="The silent-dissatisfaction flag calls an account "
        "silent when it opened no ticket in this many days (what 'silent' means to you)"
    )

    # --- outreach (issue 4)
    company_name: str = Field(default="Pulse Demo Inc.", description="Shown in every email")
    sender_email: str = Field(default="care@pulse-demo.example", description="From address")
    sender_name: str = Field(default="Pulse Customer Care", description="From name")
    footer_address: str = Field(default="1 Example Street, Springfield",
                                description="Postal address in every email's footer")
    default_locale: str = Field(default="en_US", description="Numbers, money and dates in "
                                "emails follow the contact's locale (contacts.locale); this "
                                "one for contacts without one and for CSM and team mail")
    status_page_url: str = Field(default="https://status.pulse-demo.example",
                                 description="Where customers follow an incident")
    public_base_url: str = Field(default="http://127.0.0.1:8700",
                                 description="Base of public links (unsubscribe, surveys)")
    secret_key: str = Field(default="", description="Signs public links; without it a random "
                            "key is kept in $PULSE_HOME/secret.key (mode 600)")
    transport: str = Field(default="file", description="file or sendgrid")
    sendgrid_host: str = Field(default="https://api.sendgrid.com",
                               description="SendGrid API base URL")
    sendgrid_api_key: str = Field(
        default="", validation_alias=AliasChoices("PULSE_SENDGRID_API_KEY", "SENDGRID_API_KEY"),
        description="PULSE_SENDGRID_API_KEY or SENDGRID_API_KEY; else the Airflow Connection "
        "`sendgrid_default` (its password)")
    sendgrid_webhook_public_key: str = Field(
        default="", description="Event Webhook verification key (base64 DER or PEM, ECDSA P-256)")
    webhook_max_age_seconds: int = Field(default=600, ge=1, description="Older posts are stale")
    outbox_lease_seconds: float = Field(
        default=300.0, gt=0, description="How long a sender's claim on outbox rows lasts "
        "without renewal (wall clock); another run reconciles a claim only once it ran out")
    cap_per_contact: int = Field(default=2, ge=0, description="Automated messages per contact "
                                 "per cap window, across every kind")
    cap_window_days: int = Field(default=7, ge=1)
    quiet_start: str = Field(default="21:00", description="Quiet hours start (contact's time)")
    quiet_end: str = Field(default="08:00", description="Quiet hours end (contact's time)")
    checkin_every_days: int = Field(default=30, ge=1, description="At most one check-in per "
                                    "account per this many days")
    checkins: Literal["auto", "approve"] = Field(
        default="approve", description="approve: each check-in is a draft its CSM reads, "
        "edits and approves (`pulse outreach drafts`); auto: check-ins are queued at once")
    checkin_renewal_days: int = Field(default=60, ge=0, description="A check-in mentions the "
                                      "renewal date only when it is at most this many days "
                                      "away (0: never)")
    help_center_url: str = Field(default="https://help.pulse-demo.example",
                                 description="Base of the guides a check-in links "
                                 "(outreach/guides.yaml); empty: no guide links")
    csm_queue_email: str = Field(default="", description="Who gets the daily digest of "
                                 "accounts that need a check-in but have no named CSM (empty: "
                                 "they are only recorded as suppressed, rule no_csm)")
    link_ttl_days: int = Field(default=14, ge=1, description="Public links expire after this")
    # --- CSAT surveys (issue 5)
    survey_delay_hours: float = Field(default=24.0, ge=0, description="A solved ticket (or "
                                      "resolved incident) is surveyed this long after, if "
                                      "still solved then")
    recontact_days: int = Field(default=30, ge=0, description="At most one survey per contact "
                                "per this many days, across every trigger")
    relationship_survey_days: int = Field(default=0, ge=0, description="Periodic relationship "
                                          "survey of admins and owners every this many days; "
                                          "0: off")
    survey_ttl_days: int = Field(default=14, ge=1, description="Survey rating links expire "
                                 "after this")
    survey_max_age_days: float = Field(default=7.0, gt=0, description="A trigger (solved "
                                       "ticket, resolved incident) older than its due time by "
                                       "more than this is not surveyed any more")
    # --- feedback digests (issue 6)
    team_emails: dict[str, str] = Field(
        default_factory=dict, description="Where each team's feedback digest goes, as JSON: "
        '{"billing": "billing-pm@example.com"}; teams not listed (and "triage") get '
        "PULSE_FEEDBACK_DEFAULT_EMAIL")
    feedback_default_email: str = Field(default="product@pulse-demo.example",
                                        description="Feedback digests of teams without an "
                                        "address in PULSE_TEAM_EMAILS, and the triage digest")
    reporting_currency: str = Field(default="USD", description="Money across accounts (risk "
                                    "ranking, feedback MRR) is summed and compared in this")
    fx_rates: dict[str, float] = Field(
        default_factory=dict, description="Value of one unit of a currency in the reporting "
        "currency, JSON (PULSE_FX_RATES); merged over approximate built-in rates")
    oncall_email: str = Field(default="oncall@pulse-demo.example",
                              description="Who hears about suspected incidents from chatter")
    social_team_email: str = Field(default="social@pulse-demo.example",
                                   description="Who hears about public complaints the brand "
                                   "left unanswered past the channel's expectation")
    # --- outage chatter: the distinct-authors rule beside the statistical score (issue 15)
    chatter_min_authors: int = Field(
        default=3, ge=2, description="This many distinct people complaining about one "
        "component within PULSE_CHATTER_AUTHOR_WINDOW_MINUTES raise a suspected incident "
        "when the component is quiet (baseline under PULSE_CHATTER_QUIET_BASELINE)")
    chatter_author_window_minutes: float = Field(
        default=15.0, gt=0, le=60, description="The sliding window of the distinct-authors "
        "rule, in minutes")
    chatter_quiet_baseline: float = Field(
        default=0.1, ge=0, description="The distinct-authors rule applies where the "
        "component's baseline, and its chatter in the 6 hours before, are under this many "
        "voices per 15 minutes")
    web_host: str = Field(default="127.0.0.1", description="`pulse serve` host")
    web_port: int = Field(default=8700, ge=1, le=65535, description="`pulse serve` port")
    # --- listening to X (issue 6)
    x_bearer_token: str = Field(
        default="", validation_alias=AliasChoices("PULSE_X_BEARER_TOKEN", "X_BEARER_TOKEN",
                                                  "TWITTER_BEARER_TOKEN"),
        description="X API v2 bearer token (PULSE_X_BEARER_TOKEN, X_BEARER_TOKEN or "
        "TWITTER_BEARER_TOKEN); else the Airflow Connection `x_default` (its password); none: "
        "replay mode")
    x_queries: list[str] = Field(
        default=['"Pulse Demo" OR @PulseDemoHQ -is:retweet',
                 "(to:PulseDemoHQ OR from:PulseDemoHQ) -is:retweet"],
        description="X recent-search queries (brand names, product terms, our handles); "
                    "a JSON list in PULSE_X_QUERIES")
    brand_handles: list[str] = Field(
        default=["PulseDemoHQ"], description="The brand's own social handles, a JSON list in "
        "PULSE_BRAND_HANDLES: their posts are the brand's replies (mentions' from_brand)")
    responses_expectations: Path | None = Field(
        default=None, description="YAML of the first-response time customers expect per "
        "channel, in minutes (PULSE_RESPONSES_EXPECTATIONS); default: the built-in one")
    x_replay_file: Path | None = Field(default=None, description="JSON Lines mentions replayed "
                                       "without a token; default $PULSE_HOME/landing/"
                                       "mentions.jsonl, else $PULSE_HOME/demo/mentions.jsonl")
    x_max_pages: int = Field(default=10, ge=1, description="Pages of 100 tweets per query and "
                             "run at most (beyond it, older tweets of that "
                             "window are skipped, with a warning)")
    x_wait_on_rate_limit: bool = Field(default=True, description="Sleep through a 429 until "
                                       "the window resets, else fail the query")
    # --- posting incident updates on X (issue 13)
    x_post: bool = Field(default=False, description="Post confirmed incidents' public updates "
                         "on X (PULSE_X_POST=on); needs the user-context keys below")
    x_api_host: str = Field(default="https://api.twitter.com", description="Where posts go: "
                            "X API v2's base URL (https://api.x.com works too; a local double "
                            "in tests)")
    x_api_key: str = Field(default="", validation_alias=AliasChoices(
        "PULSE_X_API_KEY", "X_API_KEY"), description="X app consumer key (OAuth 1.0a)")
    x_api_secret: str = Field(default="", validation_alias=AliasChoices(
        "PULSE_X_API_SECRET", "X_API_SECRET"), description="X app consumer secret")
    x_access_token: str = Field(default="", validation_alias=AliasChoices(
        "PULSE_X_ACCESS_TOKEN", "X_ACCESS_TOKEN"), description="the brand account's access token")
    x_access_token_secret: str = Field(default="", validation_alias=AliasChoices(
        "PULSE_X_ACCESS_TOKEN_SECRET", "X_ACCESS_TOKEN_SECRET"),
        description="the brand account's access token secret")

    # --- the production profile: Airflow on CeleryExecutor (issue 16, docs/cluster.md)
    score_shards: int = Field(
        default=1, ge=1, le=1000, description="pulse_health scores accounts in this many "
        "shards (a stable hash of the account id), one mapped task per shard; `pulse cluster "
        "up` defaults it to the worker slots (workers x concurrency)")
    cluster_airflow_db_url: str = Field(
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/pulse_airflow",
        description="`pulse cluster`: Airflow's metadata database (PostgreSQL, a database of "
        "its own, created when missing)")
    cluster_broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="`pulse cluster`: the Celery broker "
        "(Redis, or RabbitMQ as amqp://user:password@host:5672//)")
    cluster_api_port: int = Field(
        default=8780, ge=1024, le=65000, description="`pulse cluster`: the api-server's port; "
        "the triggerer's and workers' log servers take the next ports (+1, +2, ...)")
    cluster_workers: int = Field(default=2, ge=1, le=16,
                                 description="`pulse cluster`: Celery workers to start")
    cluster_worker_concurrency: int = Field(
        default=2, ge=1, le=64, description="`pulse cluster`: task slots of each worker")
    cluster_heartbeat_timeout: int = Field(
        default=300, ge=5, description="`pulse cluster`: seconds without a heartbeat before "
        "the scheduler fails a running task (a lost worker) and retries it")

    # --- health
    scorecard: Path | None = Field(default=None, description="Scorecard YAML "
                                   "(PULSE_SCORECARD); default: the built-in one")
    # --- the web app
    rate_limit_per_minute: int = Field(default=120, ge=0, description="Requests per minute "
                                       "per client on the public paths")
    rate_limit_burst: int | None = Field(default=None, ge=0, description="Bucket size; "
                                         "default half the per-minute limit")
    rate_limit_webhooks_per_minute: int = Field(default=600, ge=0, description="Requests per "
                                                "minute per client on /webhooks/ (burst half "
                                                "of it); 0: off")
    trusted_hosts: list[str] = Field(default_factory=list, description="Host names the web "
                                     "app answers to, a JSON list (`*`: any); default the "
                                     "public base URL's host, localhost, 127.0.0.1 and ::1")
    web_api_docs: bool = Field(default=False, description="Serve /docs, /redoc and "
                               "/openapi.json (off: the public app does not describe itself)")
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="`pulse serve`: a "
                                  "request line and headers larger than this get 431")
    # --- the CSM console's sign-in (issue 14)
    session_idle_minutes: int = Field(default=30, ge=1, description="A console session "
                                      "unused for this long is signed out")
    session_max_hours: float = Field(default=12.0, gt=0, description="A console session ends "
                                     "this long after sign-in, however busy")
    login_per_minute: int = Field(default=10, ge=0, description="Sign-in attempts per minute "
                                  "per client address (burst the same); 0: off")
    login_user_per_minute: int = Field(default=5, ge=0, description="Sign-in attempts per "
                                       "minute per user name (burst the same); 0: off")
    auth_header: str = Field(default="", description="Trusted-header sign-in behind an SSO "
                             "proxy: the header holding the signed-in user's email (e.g. "
                             "X-Forwarded-Email); honoured only from PULSE_AUTH_PROXIES; "
                             "empty: off")
    auth_proxies: list[str] = Field(default_factory=list, description="The SSO proxy's "
                                    "addresses, a JSON list of CIDRs; the trusted header from "
                                    "any other address is ignored")
    # --- the team's shared folder (data sets, specs) for benchmarks and CI-only tests
    shared: Path | None = Field(default=None, description="PULSE_SHARED; default "
                                "<repo>/../shared, else /work/shared")
    specs: Path | None = Field(default=None, description="Published API specs (PULSE_SPECS); "
                               "default <shared>/specs")
    datasets: Path | None = Field(default=None, description="Public data sets "
                                  "(PULSE_DATASETS); default <shared>/datasets")
    test_postgres_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        description="PostgreSQL that benchmarks and tests use (PULSE_TEST_POSTGRES_URL)")

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value.encode("utf-8")) < 32:
            raise ValueError("PULSE_SECRET_KEY must be at least 32 bytes (it signs public "
                             "links; `python -c 'import secrets; print(secrets.token_urlsafe"
                             "(32))'` makes one); its value is not shown")
        return value

    @field_validator("auth_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise ValueError(f"PULSE_AUTH_PROXIES: expected addresses or CIDRs such as "
                                 f"10.0.0.0/8 (not {cidr!r})") from None
        return [c.strip() for c in value]

    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'pulse.db'}"

    @property
    def ingest_worker_databases(self) -> frozenset[str]:
        """The databases of `ingest_worker`, lower-cased."""
        return frozenset(d.strip().lower() for d in self.ingest_worker.split(",") if d.strip())

    @property
    def landing_dir(self) -> Path:
        return self.resolved_home() / "landing"

    @property
    def airflow_home(self) -> Path:
        return self.resolved_home() / "airflow"


@lru_cache(maxsize=1)
def _cached() -> Settings:
    from pydantic import ValidationError

    from pulse.core.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:  # the message names the setting, never its value
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors(include_input=False))
        raise ConfigError(f"invalid settings: {problems}") from None


def get_settings(*, fresh: bool = False) -> Settings:
    """The settings of this process; `fresh=True` re-reads the environment."""
    if fresh:
        _cached.cache_clear()
    return _cached()


def own_handles(handles: Iterable[str] | None = None) -> set[str]:
    """The brand's own social handles as posts name their authors: lower case, without the
    leading @, blanks dropped (default: `brand_handles`, PULSE_BRAND_HANDLES)."""
    if handles is None:
        handles = get_settings().brand_handles
    return {h.strip().lstrip("@").lower() for h in handles if h and h.strip()}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
