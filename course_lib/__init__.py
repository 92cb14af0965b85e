"""course_lib: the helpers of the RLHF-with-PPO course.

Importing the package is cheap (no torch, no transformers); each module
imports what it needs.  Modules, one job each:

``config``   every hyperparameter and the ``cpu``/``gpu`` profile
``assets``   where the models and data of a profile live; checksum checks
``jsonio``   JSON save/load with atomic writes
``padding``  padding a sequence to a length, a list to a batch size
``stats``    printing the statistics of a PPO step
``data``     building the prompt dataset; the collator
``reward``   sentiment scores read by label name
``rollout``  generating responses (one prompt, or a whole batch)
``train``    the PPO training loop and its command line
``evaluate`` comparing models on held-out prompts
``plots``    training curves and reward histograms
``widgets``  "try the models yourself" prompt box
``evidence`` what hidden tests record for the autograder (plain data, checked outside the kernel)
``grading``  nbgrader release and sandboxed autograding (``make release``, ``make grade``)
``run_lab``  ``make run``: execute the notebooks with papermill
``gpu_check`` ``make gpu-check``: a real GPU run of the gpu profile, timed and reported
"""
__version__ = "0.1.0"
