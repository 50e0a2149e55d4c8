"""Unit tests of the operator's pure builders: no cluster, no Kopf."""
