"""Entry point of socle's policy pack (run by `python -m pulumi.policy ENGINE_ADDRESS THIS_DIRECTORY`)."""
from pulumi_policy import PolicyPack

from socle.policy import policies

PolicyPack(name="socle", policies=policies())
