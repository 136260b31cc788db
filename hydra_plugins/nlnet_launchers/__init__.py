"""nlnet's Hydra launchers (``hydra/launcher=slurm|local``): Hydra finds plugins in the ``hydra_plugins``
namespace package only."""
