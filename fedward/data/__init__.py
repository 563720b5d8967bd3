"""Data sources, transforms and datasets; every source yields the same item shape.

An item is a dict ``{"image": FloatTensor[C, H, W] in [0, 1], "label": int,
"meta": {"path": str}}``. ``meta`` stays on the site; nothing in it is ever sent.
"""
