"""Tiny DHMBPO settings for tests: runs of seconds on InvertedPendulum-v5 (one thread)."""

TINY_DHMBPO = [
    "train.init_steps=200", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
    "dhmbpo.iteration_steps=100", "dhmbpo.first_updates_factor=1", "dhmbpo.first_model_factor=1",
    "dhmbpo.critic_warmup_updates=10", "dhmbpo.updates_per_step=0.2",
    "dhmbpo.batch_size=16", "dhmbpo.distribution_starts=16", "dhmbpo.distribution_horizon=5",
    "dhmbpo.distribution_every=5", "dhmbpo.distribution_states=64", "dhmbpo.distribution_buffer=256",
    "dhmbpo.training_horizon=3", "dhmbpo.actor_hidden=16", "dhmbpo.critic_hidden=16", "dhmbpo.critic_members=3",
    "dhmbpo.model.members=4", "dhmbpo.model.hidden=16", "dhmbpo.model.batch_size=64",
    "dhmbpo.model.patience_scale=1", "dhmbpo.model.max_epochs_ratio=3",
]
"""`--set` items of a DHMBPO run of seconds: bursts every 100 steps after 200 random ones, 10 critic-only and 20
joint updates each (a DR before every fifth), 3 x 16 networks, a 4-member model trained for a few epochs."""
