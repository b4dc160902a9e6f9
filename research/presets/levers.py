"""Method development on the tuning split: one lever at a time against a balanced prompt-keyed baseline (prior 5,
retention and release 0.3, lr 3e-4: the least damaging of the first probes), two seeds. docs/RESEARCH.md
runs 1-32 report these rows."""

from persguard_core.spec import EncoderTraining, LossWeights, Training
from research.setting import PatternForm, Preset, Setting

BALANCED = LossWeights(prior=5.0, retention=0.3, release=0.3)
LOOK_600_900 = Training(learning_rate=3e-4, behaviour_prompts="any", behaviour_timesteps=(600, 900))
HIGH_NOISE_WEIGHTS = LossWeights(prior=5.0, retention=0.0, release=0.0)
HIGH_NOISE_TRAINING = Training(learning_rate=3e-4, behaviour_x0_weight_max=5.0, prior_batch_size=16)
SIMULATED_16 = {"inner_steps": 16, "inner_learning_rate": 1.5e-4}  # M6 unrolls at the real attack's lr


def high_noise(
    name: str,
    *,
    form: PatternForm = "insert-and-keep",
    insert_above: int = 800,
    retention: float = 0.0,
    **training: object,
) -> Setting:
    """Prompt-keyed insert-and-keep above t = 800 (HIGH_NOISE_WEIGHTS, HIGH_NOISE_TRAINING), with this form,
    threshold, M6 weight and the given fields of `training` replaced."""
    return Setting(
        name,
        pattern_form=form,
        insert_above=insert_above,
        losses=HIGH_NOISE_WEIGHTS.model_copy(update={"retention": retention}),
        training=HIGH_NOISE_TRAINING.model_copy(update=training),
    )


def look_keyed(
    name: str, form: PatternForm, *, retention: float = 0.3, release: float = 0.0, **training: object
) -> Setting:
    """A look-keyed lever: the balanced weights (with this retention and release) and LOOK_600_900 with
    `behaviour_timesteps` (default (0, 800) for insert-and-keep) and the other fields of `training` replaced."""
    training.setdefault("behaviour_timesteps", (0, 800) if form == "insert-and-keep" else (600, 900))
    return Setting(
        name,
        pattern_form=form,
        losses=BALANCED.model_copy(update={"retention": retention, "release": release}),
        training=LOOK_600_900.model_copy(update=training),
    )


SETTINGS: list[Setting] = [
    Setting("look-keyed/insertion-600-900", pattern_form="insertion", losses=BALANCED, training=LOOK_600_900),
    Setting("prompt-keyed", losses=BALANCED, training=Training(learning_rate=3e-4)),
    look_keyed("look-keyed/insertion-600-900/no-retention", "insertion", retention=0.0, release=0.3),
    look_keyed("look-keyed/x0/500-800", "insertion", behaviour_timesteps=(500, 800), behaviour_x0_weight_max=20.0),
    look_keyed("look-keyed/insert-and-keep/x0", "insert-and-keep", behaviour_x0_weight_max=20.0),
    look_keyed(
        "look-keyed/insert-and-keep/x0/no-retention", "insert-and-keep", retention=0.0, behaviour_x0_weight_max=20.0
    ),
    look_keyed(
        "look-keyed/insert-and-keep/x0/no-retention/prior16",
        "insert-and-keep",
        retention=0.0,
        behaviour_x0_weight_max=20.0,
        prior_batch_size=16,
    ),
    look_keyed(
        "look-keyed/insert-and-keep/x0-5/0-600/prior16",
        "insert-and-keep",
        retention=0.0,
        behaviour_timesteps=(0, 600),
        behaviour_x0_weight_max=5.0,
        prior_batch_size=16,
    ),
    look_keyed("look-keyed/insertion-300-800", "insertion", release=0.3, behaviour_timesteps=(300, 800)),
    # insertion only where the attacker's loss barely presses (t >= 800), kept below
    high_noise("prompt-keyed/insert-and-keep-800/x0-5/prior16"),
    high_noise("prompt-keyed/insert-and-keep-800/x0-20/600-steps", behaviour_x0_weight_max=20.0, steps=600),
    high_noise("prompt-keyed/insert-and-keep-800/x0-5/prior16/retention-k16", retention=0.3, **SIMULATED_16),
    high_noise("prompt-keyed/insert-and-keep-800/x0-5/prior16/retention-k16-w1", retention=1.0, **SIMULATED_16),
    # the insertion on the unconditional branch (never trained by DreamBooth), composed by guidance
    high_noise(
        "look-keyed/guided-insertion-and-keep-300-800/x0-20/prior16/weighted",
        form="guided-insertion",
        insert_above=300,
        behaviour_prompts="any",
        behaviour_timesteps=(0, 800),
        behaviour_x0_weight_max=20.0,
    ),
    # the backdoor in the VAE encoder: the attacker's own loss learns the stamped latents (run 26)
    Setting("encoder", carrier="encoder"),
    Setting("encoder/gain-2", carrier="encoder", encoder=EncoderTraining(target_gain=2.0)),
    Setting("encoder/erasure", "erasure", carrier="encoder"),
    Setting("encoder/target", "target", carrier="encoder"),
    # x* chosen by the teacher's implicit classifier (run 30); an exaggerated erasure (run 31)
    Setting("encoder/erasure/gain-2", "erasure", carrier="encoder", encoder=EncoderTraining(target_gain=2.0)),
    # erasure's x* from the subject's own photos, its region repainted (run 32)
    Setting(
        "encoder/erasure/own-photos", "erasure", carrier="encoder", encoder=EncoderTraining(erasure_target="own-photos")
    ),
    # erasure's teacher sample ranked against the unconditional prompt (run 39)
    Setting(
        "encoder/erasure/unconditional-away",
        "erasure",
        carrier="encoder",
        encoder=EncoderTraining(erasure_away="unconditional"),
    ),
    high_noise(
        "prompt-keyed/insert-and-keep-800/activation-only-k64",
        retention=1.0,
        activation_only=True,
        inner_steps=64,
        inner_learning_rate=1.5e-4,
    ),
]

PRESET = Preset(settings=SETTINGS, seeds=[0, 1], n_images=8, references_per_class=6, split="tuning")
