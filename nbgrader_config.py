"""nbgrader configuration of the course (run nbgrader from the repository root).

Layout: the instructor sources are ``solutions/<assignment>/<notebook>.ipynb``;
``make release`` writes the student copies to ``notebooks/<assignment>/``.
Submissions are collected into ``submitted/<student>/<assignment>/``.
"""
c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///build/gradebook.db"
c.CourseDirectory.course_id = "rlhf-ppo"

# Student copies carry no outputs; solution regions and hidden tests are removed.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"
# (outputs are cleared by `make release` itself: course_instructor/grading/release.py passes
# --ClearOutputPreprocessor.enabled=True; here it would also blank the Formgrader's view)

# The Formgrader and the feedback render student markdown, HTML and SVG: sanitised first
# (course_instructor/grading/render.py), and nbconvert's own sanitiser on top.
c.HTMLExporter.preprocessors = ["course_instructor.grading.render.SanitizeNotebook"]
c.HTMLExporter.sanitize_html = True

# Grading: a cell may run at most this many seconds (an endless loop fails its cell only).
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
