"""Helpers shared by the test tiers: ids, one domain-XML builder, assertions, golden files, the unit-tier host.

Invariant: product modules (mdev_hooks.*) are imported in product.py only, so a rename there is a one-file change.
"""
