"""The configuration's one home: its typed schema (:mod:`.schema`), the checks its types cannot
express (:mod:`.validation`), a checkpoint's config read, brought up to date and compared on
resume (:mod:`.saved`), and docs/configuration.md rendered from both (:mod:`.docs`).

Nothing here imports the rest of the package, so every layer may read its settings.
"""
