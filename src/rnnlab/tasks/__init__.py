"""The tasks: one package or module per problem, each a :class:`rnnlab.tasks.base.Task`
subclass, listed in :mod:`rnnlab.tasks.registry`; :mod:`rnnlab.tasks.workflow` trains,
evaluates and predicts with any of them."""
