"""The keys of a step in a config, declared once: validation, its messages and the reference docs read them.

Each key is a trait of :class:`StepKeys` with its type, default and help text. The config
validator sets the keys of each step on a ``StepKeys``; a value the trait refuses is the one-line
error ``expected ..., got ...`` that the trait words. The documentation's table of step keys is
generated from the same traits (the ``config-traits`` directive of docs/_ext/traitref.py).
"""

from __future__ import annotations

from typing import Any

from traitlets import HasTraits, TraitType

from pipeline.config.traits import (
    JsonBool,
    JsonEnum,
    JsonInt,
    JsonObject,
    NonEmptyString,
    QueueLimit,
    StepName,
    StepNames,
    shown,
)

#: A step's queue holds this many messages unless its config says otherwise (-1: unbounded). A packet to a step holds
#: at most half of it (engine.flow.batch_limit), and small messages need large packets: at 256 tiny messages through a
#: worker process ran about 15% slower. Large ones are held back by their bytes first (engine.flow.QUEUE_BYTES).
DEFAULT_QUEUE_LIMIT = 512

#: Most worker processes one step may have. A fixed number, not one derived from this host's cores, so that a
#: config is valid or not wherever it runs; a cap, so that a typo (10000) is an error and not thousands of
#: processes started at once. Past a few per core more processes only add memory; more hosts, not more
#: processes, are the way to scale further (pipeline-worker, docs/cluster.md).
MAX_PROCESSES = 256
#: Most workers one step may have on the run's host: ``nb_thread`` threads, or ``nb_process`` worker processes of
#: ``nb_thread`` threads each. Each worker thread of a worker process has 16 MiB of shared memory for its work
#: (engine.rings) and each thread takes open files; a cap, for the same reason as MAX_PROCESSES: 2,000 threads ran
#: out of open files in thousands of lines, 65,536 out of memory.
MAX_WORKERS = 256

#: What a step does when its run() raises: stop the run (drain, finish, exit 1) or skip the message.
ON_ERROR = ("stop", "skip")


class StepKeys(HasTraits):
    """The keys of one step: ``producer_conf``, each item of ``stagers_conf``, and ``consumer_conf``."""

    name = StepName(
        help="The step's name, unique in the pipeline, without commas, control characters or lone surrogates (text "
        "UTF-8 encodes). Other steps' "
        "``next_steps``, ``send_msg(msg, \"NAME\")``, logs and the report use it."
    ).tag(required=True)
    class_ = NonEmptyString(help="The step's class: a subclass of ``pipeline.Component`` in ``module``.").tag(
        key="class", required=True
    )
    module = NonEmptyString(
        help="The module to import ``class`` from, by name (``mysteps``, ``algorithms.camera``): installed, on "
        "the Python path, or in the directory ``pipeline-run`` runs in."
    ).tag(required=True)
    next_steps = StepNames(
        help="Where the step's outputs go: ``\"A\"``, ``\"A, B\"`` or ``[\"A\", \"B\"]``, each step once. Not "
        "allowed for the consumer. A stager without next steps is a sink: it sends nothing. When no step has "
        "``next_steps``, the steps form a linear chain: producer, stagers in list order, consumer."
    )
    nb_thread = JsonInt(
        1, min=0, max=MAX_WORKERS, help="How many worker threads run the step (in each worker process, with "
        f"``nb_process``: at most {MAX_WORKERS} in all), each with its own instance of the class. The producer "
        "runs in one thread. 0: no local workers, only remote "
        "ones (pipeline-worker; needs Pipeline.listen). With 1 in the run's own process (no ``nb_process``, not "
        "``ordered``, no Pipeline.listen), the step's router thread runs that worker itself: one hop between "
        "threads less per message."
    )
    nb_process = JsonInt(
        0, min=0, max=MAX_PROCESSES, help="Run the step's workers in this many worker processes, each with "
        f"``nb_thread`` worker threads (0: threads of the run's own process; at most {MAX_PROCESSES}). A producer "
        "in N worker processes runs N shards, each process producing its share of the input (its class must be "
        "``shardable``: more than one needs it)."
    )
    queue_limit = QueueLimit(
        DEFAULT_QUEUE_LIMIT,
        help="How many messages may wait in the step's queue (-1: unbounded). When it is full, or holds 64 MiB, "
        "the step's senders wait. It also caps the batches sent to the step (half the limit, at most 256). The "
        "producer has no queue.",
    )
    ordered = JsonBool(
        False, help="Send the step's outputs in the order in which it received its inputs, whatever worker "
        "produced them; a producer in shards sends its messages shard after shard. No effect on a step without "
        "next steps."
    )
    on_error = JsonEnum(
        ON_ERROR, default_value="stop", help="When the step's ``run()`` raises on a message: ``stop`` stops the "
        "run (the producer stops, what is in flight drains, exit 1); ``skip`` counts the failure and goes on."
    )
    config = JsonObject(
        "an object of trait values",
        help="Option values for this step only: ``{\"trait\": value, ...}`` for the step's class, over those "
        "of the class's section. Two steps of one class can so differ.",
    )

    def set_key(self, key: str, value: Any) -> None:
        """Set the step key ``key`` (as a config spells it); a TraitError says what it expected."""
        setattr(self, KEY_TRAITS[key], value)

    def get_key(self, key: str) -> Any:
        """The value of the step key ``key``."""
        return getattr(self, KEY_TRAITS[key])


def step_key_traits() -> dict[str, TraitType]:
    """Each step key, as a config file spells it, and its trait, in the order of the class body."""
    traits = StepKeys.class_own_traits()
    return {traits[name].metadata.get("key", name): traits[name] for name in vars(StepKeys) if name in traits}


#: The trait name of each step key (``class`` is a Python keyword: its trait is ``class_``).
KEY_TRAITS = {key: trait.name for key, trait in step_key_traits().items()}
#: The keys a step may have, in the order of the reference.
STEP_KEYS = tuple(KEY_TRAITS)
#: The keys every step must have.
REQUIRED_STEP_KEYS = tuple(key for key, trait in step_key_traits().items() if trait.metadata.get("required"))

#: Values that one kind of step must leave at their default: (kind, key) -> (the value, the problem).
_ROLE_RULES: dict[tuple[str, str], tuple[Any, str]] = {
    ("producer", "nb_thread"): (1, "a producer runs in one thread (expected 1, got {value})"),
    ("consumer", "next_steps"): ((), "a consumer has no next steps (expected none)"),
}


def workers_problem(keys: StepKeys) -> tuple[str, str] | None:
    """The key to blame when ``keys`` give a step more than MAX_WORKERS workers in all: (key, problem), or None."""
    workers = keys.nb_process * keys.nb_thread
    if workers <= MAX_WORKERS:
        return None
    return "nb_thread", (f"{keys.nb_process} worker processes of {keys.nb_thread} threads are {workers} workers "
                         f"(expected nb_process x nb_thread at most {MAX_WORKERS})")


def role_problem(kind: str, keys: StepKeys) -> tuple[str, str] | None:
    """The first key that a step of ``kind`` may not have as ``keys`` has it: (key, problem), or None."""
    for (rule_kind, key), (allowed, problem) in _ROLE_RULES.items():
        value = keys.get_key(key)
        if rule_kind == kind and value != allowed:
            return key, problem.format(value=shown(value))
    return None
