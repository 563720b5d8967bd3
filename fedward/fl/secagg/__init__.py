"""Secure aggregation: the server learns only sums of the hospitals' inputs.

The maths has no Flower import: :mod:`.quantise` (fixed point), :mod:`.masking`
(PRG masks, X25519), :mod:`.shares` (Shamir, sealed shares), :mod:`.identity`
(certified signing keys), :mod:`.party` (a hospital's steps) and
:mod:`.aggregator` (the server's). :mod:`.records` is what a hospital sends in
secure mode; :mod:`.client` and :mod:`.strategy` are the thin Flower layer.
See docs/privacy.md for the protocol and its threat model.
"""
