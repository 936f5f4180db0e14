"""Where training code already is: a logger or callback for each framework, imported only when used.

    from amltrack.integrations.lightning import AmltrackLogger        # lightning.pytorch.Trainer(logger=...)
    from amltrack.integrations.transformers import AmltrackCallback   # transformers.Trainer(callbacks=[...])
    from amltrack.integrations.keras import AmltrackCallback          # keras.Model.fit(callbacks=[...])

Each one logs into the process's current run if one is open, else starts one (``experiment`` and
``name`` as arguments) and ends it when training ends. ``docs/integrations.md`` lists what each records.
Importing this package imports no framework: each module imports its own.
"""
