"""Subcommands of the ``noiselevels`` CLI; each module has ``register(subparsers)``.

``register`` adds the subcommand's parser and sets ``func`` to its ``run(args)``, which returns an exit
code. Convention: a command module imports at its top only the standard library and the light
helpers of this package (``noiselevels.commands._args``, the one ``KEY=VALUE`` parser, built on
``noiselevels.options``); it imports the library (torch, the components, ``noiselevels.runs``) inside
``run()`` and its helpers, so that ``noiselevels --help`` does not import torch. This is the one
exception to the house rule that imports sit at the top of a module.
"""
