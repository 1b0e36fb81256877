"""What an image build reads and keeps: digest.py (the inputs digest an image is found by),
inputsets.py and gobuilds.py (which files are its inputs), containerfile.py and ignorefile.py (a
Containerfile's instructions, a .dockerignore's rules), caches.py and cachelocks.py (build caches
mounted into RUN steps, and their locks)."""
