"""A run's folder on disk: the names of its files, written atomically (folder.py), and the
checksums of its checkpoint steps (checkpoints.py). Plain Python and torch; nothing else of the
package."""
