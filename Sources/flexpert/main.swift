print("flexpert")
