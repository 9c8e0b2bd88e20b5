"""Teaching: the lesson helper of every notebook, the student edition, exercises and their checkers."""
