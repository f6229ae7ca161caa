"""Where carbonfast meets the tools people work in. Callbacks for training loops:
`carbonfast.integrations.transformers`, `carbonfast.integrations.lightning` and
`carbonfast.integrations.keras`, each a `CarbonfastCallback` that adds the energy, power and
emissions since the last report to what the loop logs; and the IPython extension
(`carbonfast.integrations.ipython`, loaded by `%load_ext carbonfast`).

Importing this package imports no framework: each module imports its own when it is imported.
"""
